package containers

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"time"

	"github.com/skiff-edge/skiff/containers/images"
)

// Clock is the time source of restart backoff; tests pass a fake one.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// RealClock returns the wall clock.
func RealClock() Clock { return realClock{} }

// Config configures a Runtime.
type Config struct {
	// Root is the data directory: image store (package images), pod
	// directories (root filesystems, volumes) and log files. Archives
	// dropped into Root/images/ are imported when the runtime opens.
	// Required, an absolute path: the node agent gives its data_dir. It has
	// no default, so that a caller that forgets it (a test, a tool) fails
	// instead of working on a node's real store.
	Root string
	// StateDir is the run directory: libcontainer state, shim records,
	// exit files and pod namespace mounts. It should be on a tmpfs (/run) so
	// that a reboot forgets containers that no longer exist. Required, an
	// absolute path: the node agent gives <run_dir>/containers.
	StateDir string
	// CgroupParent is the cgroup under which every container's cgroup is
	// made (in every v1 hierarchy). Default "skiff" (the node config's
	// default cgroup_parent). Give each node its own when several run side
	// by side on one machine.
	CgroupParent string
	// InsecureRegistries are registry hosts (host:port) reached over plain
	// HTTP. Loopback registries always are.
	InsecureRegistries []string
	// HostPaths says which node paths host volumes may mount. The zero
	// value, the default, refuses every host volume; the node agent gives
	// the node config's host_volume_paths and skiff's own directories. The
	// runtime always refuses its Root and StateDir as well.
	HostPaths HostPathPolicy
	// LogMaxSize is the size at which a container's log file is rotated.
	// Default 10 MiB.
	LogMaxSize int64
	// LogMaxFiles is the number of log files kept per container, the
	// current one included. Default 3.
	LogMaxFiles int
	// Logger receives the runtime's logs. Default slog.Default().
	Logger *slog.Logger
	// Clock drives restart backoff. Default the wall clock.
	Clock Clock
	// LayerGCGrace is the image store's images.Config.LayerGCGrace: its GC
	// spares layers unpacked less than this long ago. Default
	// images.DefaultLayerGCGrace (10 minutes); a negative value spares none.
	LayerGCGrace time.Duration
	// ImageLimits is the image store's images.Config.Limits: what
	// unpacking one layer may take of the node (zero fields: defaults).
	ImageLimits images.Limits
	// ShimPath is the binary re-executed as the shim and libcontainer init.
	// Default /proc/self/exe, which must call Init.
	ShimPath string
	// AllowUnconfined lets a container with Seccomp "unconfined" start;
	// when false such a start fails with ErrForbidden (the node config's
	// allow_unconfined). DefaultConfig sets it true. A Config built by
	// hand without it forbids, the safe side of a forgotten field.
	AllowUnconfined bool

	// goShim runs containers under the all-Go shim that the C shim
	// replaced, for the benchmarks that compare the two.
	goShim bool
	// shimReportWait bounds the wait for a new shim's report (default
	// defaultShimReportWait; tests shorten it).
	shimReportWait time.Duration
}

// defaultShimReportWait is how long a start waits for its shim's report
// before it kills the shim: well above the shim's own wait for another
// shim of the container (shimLockWait) plus a start on a loaded node.
const defaultShimReportWait = 2 * time.Minute

// DefaultConfig returns the defaults described on Config. Root and
// StateDir are left empty: the caller must set them.
func DefaultConfig() Config {
	return Config{
		CgroupParent: "skiff",
		LogMaxSize:   10 << 20,
		LogMaxFiles:  3,
		Logger:       slog.Default(),
		Clock:        RealClock(),
		ShimPath:     "/proc/self/exe",
		LayerGCGrace: images.DefaultLayerGCGrace,
		// A manifest may opt a container out unless the node forbids it.
		AllowUnconfined: true,
	}
}

var cgroupNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)*$`)

// Validate reports every invalid field; it fills zero values with defaults
// first, so a partly set Config is valid.
func (c *Config) Validate() error {
	d := DefaultConfig()
	if c.CgroupParent == "" {
		c.CgroupParent = d.CgroupParent
	}
	if c.LogMaxSize == 0 {
		c.LogMaxSize = d.LogMaxSize
	}
	if c.LogMaxFiles == 0 {
		c.LogMaxFiles = d.LogMaxFiles
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	if c.Clock == nil {
		c.Clock = d.Clock
	}
	if c.ShimPath == "" {
		c.ShimPath = d.ShimPath
	}
	if c.LayerGCGrace == 0 {
		c.LayerGCGrace = d.LayerGCGrace
	}
	if c.shimReportWait == 0 {
		c.shimReportWait = defaultShimReportWait
	}
	var errs []error
	if c.Root == "" || !filepath.IsAbs(c.Root) {
		errs = append(errs, fmt.Errorf("root %q: must be an absolute path", c.Root))
	}
	if c.StateDir == "" || !filepath.IsAbs(c.StateDir) {
		errs = append(errs, fmt.Errorf("state dir %q: must be an absolute path", c.StateDir))
	}
	if !cgroupNameRE.MatchString(c.CgroupParent) {
		errs = append(errs, fmt.Errorf("cgroup parent %q: must be a relative cgroup path", c.CgroupParent))
	}
	if c.LogMaxSize < 4096 {
		errs = append(errs, fmt.Errorf("log max size %d: must be at least 4096", c.LogMaxSize))
	}
	if c.LogMaxFiles < 1 {
		errs = append(errs, fmt.Errorf("log max files %d: must be at least 1", c.LogMaxFiles))
	}
	return errors.Join(errs...)
}
