package containers

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// Cleanup removes everything a runtime with this config made on the node,
// for `skiff agent --cleanup`: it kills every container and shim, unmounts
// every root filesystem, volume and pinned namespace, removes the cgroups
// under CgroupParent, the state directory and the pod directories (logs
// included). Images and layers stay. No Runtime may be open on cfg.
func Cleanup(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	var errs []error
	lcRoot := filepath.Join(cfg.StateDir, "libcontainer")
	// Shims first, so that none writes an exit or restarts anything.
	recs, _ := filepath.Glob(filepath.Join(cfg.StateDir, "containers", "*", "record.json"))
	for _, p := range recs {
		var rec record
		if b, err := os.ReadFile(p); err != nil || json.Unmarshal(b, &rec) != nil || rec.ShimPID == 0 {
			continue
		}
		if st, err := procStartTime(rec.ShimPID); err == nil && st == rec.ShimStart {
			_ = unix.Kill(rec.ShimPID, unix.SIGKILL)
		}
	}
	ents, err := os.ReadDir(lcRoot)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("list containers: %w", err))
	}
	for _, e := range ents {
		c, err := libcontainer.Load(lcRoot, e.Name())
		if err != nil {
			continue
		}
		_ = c.Signal(unix.SIGKILL)
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if st, err := c.Status(); err != nil || st == libcontainer.Stopped {
				break
			}
			time.Sleep(20 * time.Millisecond) // polling the kernel, not a test
		}
		if err := c.Destroy(); err != nil {
			errs = append(errs, fmt.Errorf("destroy %s: %w", e.Name(), err))
		}
	}
	for _, dir := range []string{cfg.StateDir, filepath.Join(cfg.Root, "pods")} {
		if err := unmountAll(dir); err != nil {
			errs = append(errs, err)
		}
	}
	if err := removeCgroups(cfg.CgroupParent); err != nil {
		errs = append(errs, err)
	}
	for _, dir := range []string{cfg.StateDir, filepath.Join(cfg.Root, "pods")} {
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeCgroups removes the cgroup parent in every hierarchy, deepest
// directories first (cgroup directories are removed with rmdir).
func removeCgroups(parent string) error {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	var errs []error
	for _, root := range roots {
		top := filepath.Join(root, parent)
		if fi, err := os.Stat(top); err != nil || !fi.IsDir() {
			continue
		}
		var dirs []string
		_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			if err := unix.Rmdir(d); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
			}
		}
	}
	return errors.Join(errs...)
}
