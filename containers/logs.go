package containers

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"
)

// Log lines are written in the CRI format the kubelet uses:
//
//	2026-11-27T02:10:06.123456789Z stdout F hello
//
// where F marks a full line and P a part of a line longer than maxLogLine.
const maxLogLine = 16 << 10

// logWriter appends timestamped lines to a file and rotates it by size:
// path, path.1, ... path.(files-1). It is safe for concurrent use.
//
// A log that cannot be written (a rotation or open that failed, a full
// disk) costs lines, never the container: the line is dropped, the next
// one tries to open the log again, and warn says once that lines are lost
// and once that the log works again. The streams are read on all the
// while, so the container never blocks on a full pipe.
type logWriter struct {
	mu      sync.Mutex // guards f, size and failing
	path    string
	maxSize int64
	files   int
	f       *os.File // nil while the log is not open: never a closed file
	size    int64
	failing bool // lines are being dropped (said once)
	now     func() time.Time
	warn    func(msg string) // the shim's stderr
}

func openLogWriter(path string, maxSize int64, files int) (*logWriter, error) {
	w := &logWriter{path: path, maxSize: maxSize, files: files, now: time.Now,
		warn: func(msg string) { fmt.Fprintln(os.Stderr, msg) }}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

// open opens the log for appending; on failure w.f is nil.
func (w *logWriter) open() error {
	f, err := os.OpenFile(w.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	w.f, w.size = f, fi.Size()
	return nil
}

// writeLine writes one line (without its newline) of a stream. A line the
// log cannot take is dropped (see logWriter): it never fails.
func (w *logWriter) writeLine(stream string, line []byte, partial bool) {
	tag := "F"
	if partial {
		tag = "P"
	}
	var b bytes.Buffer
	b.Grow(len(line) + 48)
	b.WriteString(w.now().UTC().Format(time.RFC3339Nano))
	b.WriteByte(' ')
	b.WriteString(stream)
	b.WriteByte(' ')
	b.WriteString(tag)
	b.WriteByte(' ')
	b.Write(line)
	b.WriteByte('\n')
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		if err := w.open(); err != nil {
			w.dropping(err)
			return
		}
	}
	if w.size > 0 && w.size+int64(b.Len()) > w.maxSize {
		if err := w.rotate(); err != nil {
			w.dropping(err)
			return
		}
	}
	n, err := w.f.Write(b.Bytes())
	w.size += int64(n)
	if err != nil {
		w.dropping(err)
		return
	}
	if w.failing {
		w.failing = false
		w.warn(fmt.Sprintf("log %s: written again", w.path))
	}
}

// dropping says, once per run of failures, that lines are lost.
func (w *logWriter) dropping(err error) {
	if !w.failing {
		w.failing = true
		w.warn(fmt.Sprintf("log %s: %v; dropping lines until it can be written", w.path, err))
	}
}

// rotate closes the log, shifts the files and opens a new one; on failure
// the log stays closed (w.f nil) and the next line tries to open it.
func (w *logWriter) rotate() error {
	w.f.Close()
	w.f = nil
	if w.files <= 1 {
		if err := os.Truncate(w.path, 0); err != nil {
			return fmt.Errorf("rotate: %w", err)
		}
		return w.open()
	}
	for i := w.files - 1; i >= 1; i-- {
		from := w.path
		if i > 1 {
			from = fmt.Sprintf("%s.%d", w.path, i-1)
		}
		_ = os.Rename(from, fmt.Sprintf("%s.%d", w.path, i))
	}
	return w.open()
}

func (w *logWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

// copyLines copies a stream into the log, line by line, until EOF: the
// error is the stream's (a log that cannot be written drops lines).
func (w *logWriter) copyLines(stream string, r io.Reader) error {
	br := bufio.NewReaderSize(r, maxLogLine)
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			w.writeLine(stream, line[:len(line)-1], false)
		case errors.Is(err, bufio.ErrBufferFull):
			w.writeLine(stream, line, true)
		default:
			if len(line) > 0 {
				w.writeLine(stream, line, false)
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// LogOptions select what Logs returns.
type LogOptions struct {
	// Tail is the number of last lines to return; a negative value returns
	// the whole log (rotated files included).
	Tail int
	// Follow keeps the reader open and streams new lines until the context
	// ends or the reader is closed; it follows rotations.
	Follow bool
}

// readLogs returns the log of a container as CRI-format lines.
func readLogs(ctx context.Context, path string, files int, opts LogOptions) (io.ReadCloser, error) {
	// Open the rotated files, oldest first, and the current one. A rotation
	// in the middle shows as the current file among the rotated ones: then
	// look again.
	var rotated []*os.File
	var cur *os.File
	for attempt := 0; ; attempt++ {
		rotated, cur = nil, nil
		var err error
		for i := files - 1; i >= 1; i-- {
			if f, err := os.Open(fmt.Sprintf("%s.%d", path, i)); err == nil {
				rotated = append(rotated, f)
			}
		}
		cur, err = os.Open(path)
		if err != nil {
			closeAll(rotated)
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("log %s: %w", path, ErrNotFound)
			}
			return nil, err
		}
		if !rotatedMeanwhile(cur, rotated) || attempt == 3 {
			break
		}
		closeAll(rotated)
		cur.Close()
	}
	var lines [][]byte
	keep := func(l []byte) {
		lines = append(lines, append([]byte(nil), l...))
		if opts.Tail >= 0 && len(lines) > opts.Tail {
			lines = lines[1:]
		}
	}
	for _, f := range rotated {
		scanLines(f, keep)
		f.Close()
	}
	scanLines(cur, keep) // leaves cur at the end of what it read
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		for _, l := range lines {
			if _, err := pw.Write(l); err != nil {
				cur.Close()
				return
			}
		}
		if !opts.Follow {
			cur.Close()
			pw.Close()
			return
		}
		pw.CloseWithError(follow(ctx, path, files, cur, pw))
	}()
	return &logReader{PipeReader: pr, cancel: cancel}, nil
}

type logReader struct {
	*io.PipeReader
	cancel context.CancelFunc
}

func (r *logReader) Close() error {
	r.cancel()
	return r.PipeReader.Close()
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// rotatedMeanwhile says whether cur is one of the rotated files.
func rotatedMeanwhile(cur *os.File, rotated []*os.File) bool {
	ci, err := cur.Stat()
	if err != nil {
		return false
	}
	for _, f := range rotated {
		if fi, err := f.Stat(); err == nil && sameFile(fi, ci) {
			return true
		}
	}
	return false
}

func scanLines(f *os.File, fn func([]byte)) {
	br := bufio.NewReaderSize(f, 64<<10)
	var off int64
	for {
		l, err := br.ReadBytes('\n')
		if err != nil {
			// A partial last line is left for follow to read whole.
			_, _ = f.Seek(off, io.SeekStart)
			return
		}
		off += int64(len(l))
		fn(l)
	}
}

// follow streams what is appended to the log and goes on in the next file
// when the writer rotates, one file at a time (path.2 -> path.1 -> path), so
// that a reader that polls across several rotations skips nothing that is
// still on disk. It polls: the writer is another process, and a log reader
// is rare enough that inotify is not worth its file descriptors.
func follow(ctx context.Context, path string, files int, f *os.File, w io.Writer) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	defer func() { f.Close() }()
	var pending []byte
	buf := make([]byte, 64<<10)
	drain := func() error {
		for {
			n, err := f.Read(buf)
			if n > 0 {
				pending = append(pending, buf[:n]...)
				if i := bytes.LastIndexByte(pending, '\n'); i >= 0 {
					if _, werr := w.Write(pending[:i+1]); werr != nil {
						return werr
					}
					pending = append(pending[:0], pending[i+1:]...)
				}
			}
			if err != nil || n == 0 {
				return nil
			}
		}
	}
	for {
		if err := drain(); err != nil {
			return err
		}
		cur, err := f.Stat()
		if err != nil {
			return err
		}
		if fi, err := os.Stat(path); err == nil && !sameFile(fi, cur) {
			// Rotated: the writer closed the old file before renaming it,
			// so one more drain reads all of it.
			if err := drain(); err != nil {
				return err
			}
			if nf, err := os.Open(nextLogFile(path, files, cur)); err == nil {
				f.Close()
				f = nf
				pending = pending[:0]
				continue
			}
		} else if off, err := f.Seek(0, io.SeekCurrent); err == nil && off > cur.Size() {
			// Truncated in place (a single log file).
			_, _ = f.Seek(0, io.SeekStart)
			pending = pending[:0]
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// nextLogFile returns the file written after cur: the rotated file one
// step newer than where cur is now, or the oldest one left if cur was
// rotated away.
func nextLogFile(path string, files int, cur os.FileInfo) string {
	rotated := func(k int) string {
		if k == 0 {
			return path
		}
		return fmt.Sprintf("%s.%d", path, k)
	}
	for k := 1; k < files; k++ {
		if fi, err := os.Stat(rotated(k)); err == nil && sameFile(fi, cur) {
			return rotated(k - 1)
		}
	}
	for k := files - 1; k >= 1; k-- {
		if _, err := os.Stat(rotated(k)); err == nil {
			return rotated(k)
		}
	}
	return path
}

func sameFile(a, b os.FileInfo) bool {
	sa, ok1 := a.Sys().(*syscall.Stat_t)
	sb, ok2 := b.Sys().(*syscall.Stat_t)
	return ok1 && ok2 && sa.Ino == sb.Ino && sa.Dev == sb.Dev
}
