package netlb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// ipam hands out pod IPs from the node's pod CIDR and keeps them on disk:
// one file per IP in dir, named by the IP and holding the pod's name, made
// with O_EXCL, so that no IP is given twice even by two processes or after a
// restart. It skips the network address, the gateway (the first address) and
// the broadcast address, and goes round the range from the last IP it gave,
// so that a freed IP is not handed out again at once.
type ipam struct {
	dir    string
	subnet *net.IPNet
	mu     sync.Mutex // serialises allocations in this process; flock across processes
	// seen is where each pod's IP was last found (pod -> IP), a hint
	// guarded by mu: a lookup reads that one file and scans the whole
	// directory only when the file no longer names the pod. (Scanning
	// every file for each pod's periodic network check cost the node
	// reads of n files for each of n pods.)
	seen map[string]string
}

const ipamLastFile = "last_reserved_ip"

func newIPAM(dir string, subnet *net.IPNet) *ipam {
	return &ipam{dir: dir, subnet: subnet}
}

func ip4u(ip net.IP) uint32         { return binary.BigEndian.Uint32(ip.To4()) }
func u4ip(v uint32) net.IP          { ip := make(net.IP, 4); binary.BigEndian.PutUint32(ip, v); return ip }
func gatewayOf(n *net.IPNet) net.IP { return u4ip(ip4u(n.IP.Mask(n.Mask)) + 1) }

// lock takes the directory's lock file; the returned func releases it.
func (a *ipam) lock() (func(), error) {
	a.mu.Lock()
	if err := os.MkdirAll(a.dir, 0o700); err != nil {
		a.mu.Unlock()
		return nil, fmt.Errorf("ipam dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(a.dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		a.mu.Unlock()
		return nil, fmt.Errorf("ipam lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		a.mu.Unlock()
		return nil, fmt.Errorf("ipam lock: %w", err)
	}
	return func() { f.Close(); a.mu.Unlock() }, nil
}

// owners reads every allocation: IP -> pod name.
func (a *ipam) owners() (map[string]string, error) {
	ents, err := os.ReadDir(a.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read ipam dir: %w", err)
	}
	m := map[string]string{}
	for _, e := range ents {
		if net.ParseIP(e.Name()) == nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(a.dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read ipam entry: %w", err)
		}
		m[e.Name()] = strings.TrimSpace(string(b))
	}
	return m, nil
}

// lookup returns the IP held by pod, if any.
func (a *ipam) lookup(pod string) (net.IP, error) {
	unlock, err := a.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	return a.lookupLocked(pod)
}

func (a *ipam) lookupLocked(pod string) (net.IP, error) {
	if ip, ok := a.seen[pod]; ok {
		b, err := os.ReadFile(filepath.Join(a.dir, ip))
		if err == nil && strings.TrimSpace(string(b)) == pod {
			return net.ParseIP(ip).To4(), nil
		}
	}
	m, err := a.owners()
	if err != nil {
		return nil, err
	}
	a.seen = make(map[string]string, len(m))
	var found net.IP
	for ip, owner := range m {
		a.seen[owner] = ip
		if owner == pod {
			found = net.ParseIP(ip).To4()
		}
	}
	return found, nil
}

// allocate returns pod's IP, reserving a new one if it holds none.
func (a *ipam) allocate(pod string) (net.IP, error) {
	unlock, err := a.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if ip, err := a.lookupLocked(pod); err != nil || ip != nil {
		return ip, err
	}
	base := ip4u(a.subnet.IP.Mask(a.subnet.Mask))
	ones, bits := a.subnet.Mask.Size()
	size := uint32(1) << uint(bits-ones)
	first, last := base+2, base+size-2 // skip network, gateway, broadcast
	start := first
	if b, err := os.ReadFile(filepath.Join(a.dir, ipamLastFile)); err == nil {
		if ip := net.ParseIP(strings.TrimSpace(string(b))).To4(); ip != nil {
			if v := ip4u(ip); v >= first && v < last {
				start = v + 1
			}
		}
	}
	n := last - first + 1
	for i := uint32(0); i < n; i++ {
		v := first + (start-first+i)%n
		ip := u4ip(v)
		f, err := os.OpenFile(filepath.Join(a.dir, ip.String()), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reserve %s: %w", ip, err)
		}
		_, werr := f.WriteString(pod)
		if serr := f.Sync(); werr == nil {
			werr = serr
		}
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			os.Remove(f.Name())
			return nil, fmt.Errorf("reserve %s: %w", ip, werr)
		}
		// The last-reserved hint is only a hint: losing it costs nothing.
		_ = os.WriteFile(filepath.Join(a.dir, ipamLastFile), []byte(ip.String()), 0o600)
		if a.seen == nil {
			a.seen = map[string]string{}
		}
		a.seen[pod] = ip.String()
		return ip, nil
	}
	return nil, fmt.Errorf("%w: %s", ErrPoolExhausted, a.subnet)
}

// release frees pod's IP. Releasing a pod that holds none is not an error.
func (a *ipam) release(pod string) error {
	unlock, err := a.lock()
	if err != nil {
		return err
	}
	defer unlock()
	delete(a.seen, pod)
	m, err := a.owners()
	if err != nil {
		return err
	}
	for ip, owner := range m {
		if owner == pod {
			if err := os.Remove(filepath.Join(a.dir, ip)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("release %s: %w", ip, err)
			}
		}
	}
	return nil
}
