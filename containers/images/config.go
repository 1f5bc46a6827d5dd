package images

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"time"
)

// Config configures a Store.
type Config struct {
	// Root is the data directory the store keeps its files under: archives
	// to import in Root/images, the index with its locks and pending
	// markers in Root/content, unpacked layers in Root/layers. Required, an
	// absolute path; it has no default, being the node's data_dir, which
	// the caller knows (configs owns its default).
	Root string
	// InsecureRegistries are registry hosts (host:port) reached over plain
	// HTTP. Loopback registries always are; no other is.
	InsecureRegistries []string
	// LayerGCGrace: GC spares layers unpacked less than this long ago,
	// besides those that images, InUse and stores in the middle of storing
	// an image use (a guard against a process that does not take the
	// store's locks). Default 10 minutes; a negative value spares none.
	LayerGCGrace time.Duration
	// InUse, if set, returns more layers (hex diff IDs) that GC must spare:
	// those under containers, whose image may have been removed. GC calls
	// it under the store's index lock, so it must not call the store.
	InUse func() (map[string]bool, error)
	// Limits bound what unpacking one layer may take of the node. Its zero
	// fields take their defaults (see Limits).
	Limits Limits
	// Logger receives the store's logs. Default slog.Default().
	Logger *slog.Logger
}

// DefaultLayerGCGrace is the default of Config.LayerGCGrace.
const DefaultLayerGCGrace = 10 * time.Minute

// Limits bound what unpacking one layer may take of the node. A layer
// that passes one is refused whole: its partial directory is removed and
// the store is left as it was. The node config's [images] table sets them.
type Limits struct {
	// MaxLayerBytes caps a layer's uncompressed size: the sizes its files
	// declare (a sparse file's holes included), checked before a file is
	// written, and the uncompressed tar stream as read (headers, skipped
	// data and trailing padding included), so that a gzip bomb stops at
	// the cap. A layer whose compressed size (declared or read) passes it
	// by more than gzip's worst-case overhead is refused before it is
	// read. Default DefaultMaxLayerBytes; must not be negative.
	MaxLayerBytes int64
	// MaxLayerEntries caps the entries (files, directories, links,
	// whiteouts, tar meta entries) of a layer: each costs an inode and a
	// few system calls. Default DefaultMaxLayerEntries; must not be
	// negative.
	MaxLayerEntries int
	// MinFreeBytes is the space unpacking leaves free on the file system
	// of Root: a layer is refused when its declared size, or what it has
	// written so far plus its next file, would leave less. The node's
	// state, logs and containers' writable layers share that disk, and a
	// full disk stops the agent itself. Default DefaultMinFreeBytes; a
	// negative value checks no free space.
	MinFreeBytes int64
}

// Defaults of Limits. They fit an edge disk (16-64 GB of eMMC or SSD):
//   - 4 GiB per layer: the largest layers of real images (CUDA and ML
//     runtimes) are 2-3 GiB uncompressed, while a bomb is held to a small
//     share of the disk and to a bounded time (a minute at eMMC speeds).
//   - 500k entries per layer: distribution and node_modules layers have
//     10k-200k; 500k is a quarter of the inodes of a 32 GB ext4.
//   - 1 GiB left free: room for the node's store, logs and containers'
//     writes while images come in.
const (
	DefaultMaxLayerBytes   = 4 << 30
	DefaultMaxLayerEntries = 500_000
	DefaultMinFreeBytes    = 1 << 30
)

// withDefaults returns l with its zero fields set to their defaults.
func (l Limits) withDefaults() Limits {
	if l.MaxLayerBytes == 0 {
		l.MaxLayerBytes = DefaultMaxLayerBytes
	}
	if l.MaxLayerEntries == 0 {
		l.MaxLayerEntries = DefaultMaxLayerEntries
	}
	if l.MinFreeBytes == 0 {
		l.MinFreeBytes = DefaultMinFreeBytes
	}
	return l
}

// Validate fills the zero fields that have a default and checks Root and
// Limits.
func (c *Config) Validate() error {
	c.Limits = c.Limits.withDefaults()
	if c.LayerGCGrace == 0 {
		c.LayerGCGrace = DefaultLayerGCGrace
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Root == "" || !filepath.IsAbs(c.Root) {
		return fmt.Errorf("root %q: must be an absolute path", c.Root)
	}
	if c.Limits.MaxLayerBytes < 0 {
		return fmt.Errorf("max layer bytes %d: must not be negative", c.Limits.MaxLayerBytes)
	}
	if c.Limits.MaxLayerEntries < 0 {
		return fmt.Errorf("max layer entries %d: must not be negative", c.Limits.MaxLayerEntries)
	}
	return nil
}
