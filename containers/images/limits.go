package images

// What unpacking may take of the node (Limits), and the errors of a layer
// that unpacking refuses.

import (
	"fmt"
	"io"
	"math"
	"strconv"

	"golang.org/x/sys/unix"
)

// refusal is why a layer is refused. Its text is the reason alone (the
// caller names the entry, the layer and the image); errors.Is finds its
// kind: ErrUnsafeLayer, ErrLayerTooLarge or ErrNoSpace.
type refusal struct {
	kind error
	msg  string
}

func refuse(kind error, format string, args ...any) error {
	return &refusal{kind: kind, msg: fmt.Sprintf(format, args...)}
}

func (r *refusal) Error() string { return r.msg }
func (r *refusal) Unwrap() error { return r.kind }

// entryError names the layer entry an error is about: `entry "a/.wh..":
// whiteout resolves to the layer dir itself`. after says that the error
// came after the entry, reading the stream on to the next one.
type entryError struct {
	entry string
	after bool
	err   error
}

func (e *entryError) Error() string {
	switch {
	case e.after && e.entry == "":
		return fmt.Sprintf("at the start of the layer: %v", e.err)
	case e.after:
		return fmt.Sprintf("after entry %q: %v", e.entry, e.err)
	}
	return fmt.Sprintf("entry %q: %v", e.entry, e.err)
}

func (e *entryError) Unwrap() error { return e.err }

// capReader reads an uncompressed layer stream and fails once more than
// max bytes came through it: a gzip bomb is cut there, whatever part of
// the tar (content, headers, data the tar reader skips, padding after the
// end) carries it.
type capReader struct {
	r   io.Reader
	n   int64 // bytes read so far
	max int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.n > c.max {
		return 0, c.err()
	}
	if left := c.max - c.n + 1; int64(len(p)) > left {
		p = p[:left] // one byte past the cap tells a stream that goes on
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.max {
		return n - int(c.n-c.max), c.err()
	}
	return n, err
}

func (c *capReader) err() error {
	return refuse(ErrLayerTooLarge, "uncompressed layer passes the %s cap", humanBytes(c.max))
}

// compressedCap is what a layer's compressed stream may take: deflate adds
// at most 5 bytes per 64 KiB stored block, gzip a header and a trailer, so
// a layer within maxBytes uncompressed is within this compressed.
func compressedCap(maxBytes int64) int64 {
	if slack := maxBytes/1024 + 1<<20; maxBytes <= math.MaxInt64-slack {
		return maxBytes + slack
	}
	return math.MaxInt64
}

// restatEvery is how much a layer writes between two statfs calls of its
// spaceGuard: others (logs, containers, another unpack) write to the disk
// meanwhile.
const restatEvery = 64 << 20

// spaceGuard refuses writes that would leave less than reserve bytes free
// on the file system of dir. It calls statfs when a write passes the
// budget left by the previous call, or every restatEvery bytes.
type spaceGuard struct {
	dir       string
	reserve   int64
	budget    int64 // what may be written before the next statfs
	sinceStat int64
	blockSize int64
}

func newSpaceGuard(dir string, reserve int64) *spaceGuard {
	return &spaceGuard{dir: dir, reserve: reserve, blockSize: 4096}
}

// take accounts for n bytes about to be written.
func (g *spaceGuard) take(n int64) error {
	if n <= g.budget && g.sinceStat+n < restatEvery {
		g.budget -= n
		g.sinceStat += n
		return nil
	}
	free, bsize, err := freeSpace(g.dir)
	if err != nil {
		return err
	}
	if bsize > 0 {
		g.blockSize = bsize
	}
	g.budget, g.sinceStat = free-g.reserve, 0
	if n > g.budget {
		return noSpace(g.dir, n, free, g.reserve)
	}
	g.budget -= n
	g.sinceStat += n
	return nil
}

// blocks is what n bytes of file content take on disk: whole blocks.
func (g *spaceGuard) blocks(n int64) int64 {
	return (n + g.blockSize - 1) / g.blockSize * g.blockSize
}

// checkFree refuses need more bytes on the file system of dir if they
// would leave less than reserve free. A negative reserve checks nothing.
func checkFree(dir string, need, reserve int64) error {
	if reserve < 0 {
		return nil
	}
	free, _, err := freeSpace(dir)
	if err != nil {
		return err
	}
	if need > free-reserve {
		return noSpace(dir, need, free, reserve)
	}
	return nil
}

func noSpace(dir string, need, free, reserve int64) error {
	return refuse(ErrNoSpace, "%s more would leave less than %s free on the file system of %s (%s free)",
		humanBytes(need), humanBytes(reserve), dir, humanBytes(free))
}

// freeSpace returns the bytes that unprivileged writers may still use on
// the file system of dir (the blocks that ext4 keeps for root are not
// counted: they are the host's own reserve) and its block size.
func freeSpace(dir string) (free, blockSize int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), int64(st.Bsize), nil // Bsize is int32 on 32-bit arm
}

// humanBytes writes n with a binary unit: "4 GiB", "1.5 MiB", "512 B".
func humanBytes(n int64) string {
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	if n < 1024 && n > -1024 {
		return strconv.FormatInt(n, 10) + " B"
	}
	f, i := float64(n)/1024, 0
	for (f >= 1024 || f <= -1024) && i < len(units)-1 {
		f /= 1024
		i++
	}
	if f == float64(int64(f)) {
		return strconv.FormatInt(int64(f), 10) + " " + units[i]
	}
	return strconv.FormatFloat(f, 'f', 1, 64) + " " + units[i]
}
