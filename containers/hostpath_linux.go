package containers

import (
	"errors"
	"sync"

	"golang.org/x/sys/unix"
)

// bindOptions are the mount options of a volume's bind mount in a
// container. A read-only volume is read-only all the way down: where the
// kernel has mount_setattr (Linux 5.12) the bind is recursive and every
// mount below the volume's path is made read-only too ("rro"); on older
// kernels the bind is not recursive, so that a mount below the path shows
// as its empty mount point rather than writable.
func bindOptions(readOnly bool) []string {
	switch {
	case !readOnly:
		return []string{"rbind", "rw", "nosuid", "nodev"}
	case recursiveReadOnly():
		return []string{"rbind", "ro", "rro", "nosuid", "nodev"}
	default:
		return []string{"bind", "ro", "nosuid", "nodev"}
	}
}

// recursiveReadOnly says whether the kernel has mount_setattr, which
// libcontainer needs for "rro". The probe passes a bad file descriptor:
// a kernel with the call answers EBADF, one without ENOSYS.
var recursiveReadOnly = sync.OnceValue(func() bool {
	err := unix.MountSetattr(-1, "", unix.AT_EMPTY_PATH, &unix.MountAttr{})
	return !errors.Is(err, unix.ENOSYS)
})
