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
	// Logger receives the store's logs. Default slog.Default().
	Logger *slog.Logger
}

// DefaultLayerGCGrace is the default of Config.LayerGCGrace.
const DefaultLayerGCGrace = 10 * time.Minute

// Validate fills the zero fields that have a default and checks Root.
func (c *Config) Validate() error {
	if c.LayerGCGrace == 0 {
		c.LayerGCGrace = DefaultLayerGCGrace
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Root == "" || !filepath.IsAbs(c.Root) {
		return fmt.Errorf("root %q: must be an absolute path", c.Root)
	}
	return nil
}
