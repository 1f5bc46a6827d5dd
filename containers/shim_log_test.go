package containers

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fsAppendFL is the append-only inode flag (linux/fs.h): such a file
// cannot be truncated, so the C shim's rotation of a single log file fails.
const fsAppendFL = 0x20

// setInodeFlags sets (on) or clears the inode flags fl of path.
func setInodeFlags(t *testing.T, path string, fl int32, on bool) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cur int32
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.FS_IOC_GETFLAGS, uintptr(unsafe.Pointer(&cur))); e != 0 {
		t.Fatalf("get inode flags of %s: %v", path, e)
	}
	if on {
		cur |= fl
	} else {
		cur &^= fl
	}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.FS_IOC_SETFLAGS, uintptr(unsafe.Pointer(&cur))); e != 0 {
		t.Fatalf("set inode flags of %s: %v", path, e)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer goroutine and readers.
type syncBuffer struct {
	mu sync.Mutex // protects b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestShimLogRecoversFromFailedRotation runs the C shim itself (this test
// binary, as "containers-shim-c", with pipes for the container's stdout
// and stderr) and makes its log rotation fail: with 2 files, the shim's
// open file limit is lowered so that the rename works but reopening the
// log fails (EMFILE); with 1 file, the log is made append-only, so that
// the truncate fails. While it fails the shim drops lines (it says so
// once on stderr) with its log descriptor closed (-1, never written);
// once the cause is gone, the next lines reopen the log and are written,
// within the size budget. Needs root (raising a limit of another process,
// inode flags) and a file system with inode flags (ext4, or tmpfs on
// Linux 6.0 and later) for t.TempDir().
func TestShimLogRecoversFromFailedRotation(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name  string
		files int
		// fail makes the next rotation of the shim's log fail; the
		// func it returns undoes it.
		fail func(t *testing.T, pid int, logPath string) (undo func())
	}{
		{"reopen fails (open file limit, 2 files)", 2, failReopen},
		{"truncate fails (append-only, 1 file)", 1, func(t *testing.T, _ int, logPath string) func() {
			setInodeFlags(t, logPath, fsAppendFL, true)
			return func() { setInodeFlags(t, logPath, fsAppendFL, false) }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const maxSize = 400
			dir := t.TempDir()
			logPath := filepath.Join(dir, "c.log")
			outR, outW, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			errR, errW, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			repR, repW, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			// PID: a process that does not exist (the shim never reaps
			// it and runs until killed); MEMCG empty.
			cmd := exec.Command(os.Args[0], cShimArg, filepath.Join(dir, "spec.json"), "2147483646",
				"2026-01-01T00:00:00Z", "", logPath, fmt.Sprint(maxSize), fmt.Sprint(tc.files), filepath.Join(dir, "exit.json"), "3", "4", "5")
			cmd.ExtraFiles = []*os.File{outR, errR, repW} // fds 3, 4 and 5
			var stderr syncBuffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				cmd.Process.Kill()
				cmd.Wait()
				// Clear the flag even when the test failed midway, or
				// t.TempDir cannot remove the file.
				for _, p := range []string{logPath, logPath + ".1"} {
					if _, err := os.Stat(p); err == nil {
						setInodeFlags(t, p, fsAppendFL, false)
					}
				}
			})
			outR.Close()
			errR.Close()
			repW.Close()
			t.Cleanup(func() { outW.Close(); errW.Close() })
			rep, err := bufio.NewReader(repR).ReadString('\n')
			repR.Close()
			if err != nil || !strings.Contains(rep, `"pid":2147483646`) {
				t.Fatalf("shim report %q, %v; stderr %s", rep, err, stderr.String())
			}
			logs := func() string {
				var all string
				for _, p := range []string{logPath + ".1", logPath} {
					b, _ := os.ReadFile(p)
					all += string(b)
				}
				return all
			}
			write := func(prefix string, n int) {
				for i := range n {
					if _, err := fmt.Fprintf(outW, "%s %d\n", prefix, i); err != nil {
						t.Fatal(err)
					}
				}
			}
			write("before", 3)
			eventually(t, 10*time.Second, "the first lines logged", func() error {
				if !strings.Contains(logs(), "stdout F before 2\n") {
					return fmt.Errorf("log: %q", logs())
				}
				return nil
			})

			undo := tc.fail(t, cmd.Process.Pid, logPath)
			write("during", 20) // about 1 KB: past the 400 bytes, a rotation is due
			eventually(t, 10*time.Second, "the shim says the rotation failed", func() error {
				if !strings.Contains(stderr.String(), "rotate log") {
					ents, _ := os.ReadDir(dir)
					var names []string
					for _, e := range ents {
						names = append(names, e.Name())
					}
					return fmt.Errorf("stderr: %q; files %v; log %q", stderr.String(), names, logs())
				}
				return nil
			})
			undo()

			// The next lines reopen the log, and are written.
			write("after", 3)
			eventually(t, 10*time.Second, "lines after the failure logged", func() error {
				if !strings.Contains(logs(), "stdout F after 2\n") {
					return fmt.Errorf("log files hold %q; shim stderr %q", logs(), stderr.String())
				}
				return nil
			})
			if !strings.Contains(stderr.String(), "works again") {
				t.Errorf("the shim did not say the log works again: %q", stderr.String())
			}
			for _, p := range []string{logPath, logPath + ".1"} {
				if fi, err := os.Stat(p); err == nil && fi.Size() > maxSize+maxLogLine+64 {
					t.Errorf("%s: %d bytes, over the budget of %d", p, fi.Size(), maxSize)
				}
			}
		})
	}
}

// failReopen lowers the open file limit of process pid (the shim) to the
// descriptor its log would be reopened on after a rotation closes it (the
// lowest one free then), so that the reopen fails with EMFILE; it returns
// the func that restores the limit.
func failReopen(t *testing.T, pid int, logPath string) func() {
	t.Helper()
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		t.Fatal(err)
	}
	open := map[int]bool{}
	logFD := -1
	for _, e := range ents {
		var fd int
		if _, err := fmt.Sscan(e.Name(), &fd); err != nil {
			continue
		}
		open[fd] = true
		if target, _ := os.Readlink(filepath.Join(fdDir, e.Name())); target == logPath {
			logFD = fd
		}
	}
	if logFD < 0 {
		t.Fatalf("the shim has no descriptor of %s", logPath)
	}
	delete(open, logFD) // the rotation closes it first
	free := 0
	for open[free] {
		free++
	}
	var old unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &old); err != nil {
		t.Fatal(err)
	}
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: uint64(free), Max: old.Max}, nil); err != nil {
		t.Fatalf("lower the shim's open file limit: %v", err)
	}
	return func() {
		if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &old, nil); err != nil {
			t.Errorf("restore the shim's open file limit: %v", err)
		}
	}
}
