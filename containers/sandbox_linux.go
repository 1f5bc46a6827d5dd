package containers

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/moby/sys/mountinfo"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// makePodNamespaces creates the IPC and UTS namespaces of a pod (and its
// network namespace when netnsPath is empty) and pins each by a bind mount
// of its nsfs file, so that they live as long as the pod and not as long as
// any one container. The UTS namespace gets the pod's hostname.
func makePodNamespaces(dir, hostname string, withNet bool) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	kinds := []string{"ipc", "uts"}
	flags := unix.CLONE_NEWIPC | unix.CLONE_NEWUTS
	if withNet {
		kinds = append(kinds, "net")
		flags |= unix.CLONE_NEWNET
	}
	for _, k := range kinds {
		p := filepath.Join(dir, k)
		if mounted(p) {
			continue // made before: idempotent
		}
		f, err := os.OpenFile(p, os.O_CREATE|os.O_RDONLY, 0o600)
		if err != nil {
			return err
		}
		f.Close()
	}
	errc := make(chan error, 1)
	go func() {
		// The thread's namespaces change for good: it is never unlocked, so
		// the Go runtime ends it when this goroutine returns.
		runtime.LockOSThread()
		errc <- func() error {
			if err := unix.Unshare(flags); err != nil {
				return fmt.Errorf("unshare: %w", err)
			}
			if err := unix.Sethostname([]byte(hostname)); err != nil {
				return fmt.Errorf("sethostname: %w", err)
			}
			if withNet {
				lo, err := netlink.LinkByName("lo")
				if err != nil {
					return fmt.Errorf("loopback: %w", err)
				}
				if err := netlink.LinkSetUp(lo); err != nil {
					return fmt.Errorf("loopback up: %w", err)
				}
			}
			tid := unix.Gettid()
			for _, k := range kinds {
				p := filepath.Join(dir, k)
				if mounted(p) {
					continue
				}
				src := fmt.Sprintf("/proc/%d/task/%d/ns/%s", os.Getpid(), tid, k)
				if err := unix.Mount(src, p, "", unix.MS_BIND, ""); err != nil {
					return fmt.Errorf("pin %s namespace: %w", k, err)
				}
			}
			return nil
		}()
	}()
	return <-errc
}

// mounted reports whether path is a mount point.
func mounted(path string) bool {
	ok, err := mountinfo.Mounted(path)
	return err == nil && ok
}

// unmountAll lazily unmounts every mount at or below dir, deepest first.
func unmountAll(dir string) error {
	mnts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		return m.Mountpoint != dir && !strings.HasPrefix(m.Mountpoint, dir+"/"), false
	})
	if err != nil {
		return err
	}
	var errs []error
	sortMountsDeepFirst(mnts)
	for _, m := range mnts {
		if err := unix.Unmount(m.Mountpoint, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m.Mountpoint, err))
		}
	}
	return errors.Join(errs...)
}

func sortMountsDeepFirst(m []*mountinfo.Info) {
	for i := 1; i < len(m); i++ {
		for j := i; j > 0 && strings.Count(m[j].Mountpoint, "/") > strings.Count(m[j-1].Mountpoint, "/"); j-- {
			m[j], m[j-1] = m[j-1], m[j]
		}
	}
}

// mountOverlay stacks the layer directories (bottom first) below upper at
// target. It does nothing if target is mounted already.
func mountOverlay(layers []string, upper, work, target, empty string) error {
	if mounted(target) {
		return nil
	}
	for _, d := range []string{upper, work, target} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	lower := make([]string, 0, len(layers))
	for i := len(layers) - 1; i >= 0; i-- {
		lower = append(lower, layers[i])
	}
	if len(lower) == 0 {
		if err := os.MkdirAll(empty, 0o755); err != nil {
			return err
		}
		lower = []string{empty}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(lower, ":"), upper, work)
	if len(opts) >= os.Getpagesize() {
		return fmt.Errorf("overlay options of %d layers are too long (%d bytes)", len(layers), len(opts))
	}
	if err := unix.Mount("overlay", target, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay at %s: %w", target, err)
	}
	return nil
}

// mountTmpfs mounts a size-limited tmpfs at dir unless one is there.
func mountTmpfs(dir string, size int64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if mounted(dir) {
		return nil
	}
	opts := "mode=0777"
	if size > 0 {
		opts += fmt.Sprintf(",size=%d", size)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mount tmpfs at %s: %w", dir, err)
	}
	return nil
}
