package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The activator: scale to zero's other half. While an app that may scale
// to zero has no endpoints, this node's load balancer redirects new
// connections to its services' cluster IPs to the activator's port
// (netlb.Service.Activator). The activator learns which service each was
// for (SO_ORIGINAL_DST), asks the server to wake the app (0 → 1; a node may
// ask nothing else), holds the connection until the service has a ready
// endpoint and then forwards it there, byte for byte, both ways.
//
// It is bounded: at most MaxHeld connections wait per service, each at
// most MaxWait; past either the connection is reset (the client sees
// "connection reset by peer" at once rather than a hang) and the reason is
// logged. Every goroutine it starts ends with its connection; serve waits
// for them all.

// ActivatorConfig bounds the activator.
type ActivatorConfig struct {
	// MaxHeld is the most connections held per service. Default 100.
	MaxHeld int
	// MaxWait is how long a connection is held for an endpoint. Default 30s.
	MaxWait time.Duration
}

type activator struct {
	log *slog.Logger
	ln  *net.TCPListener
	cfg ActivatorConfig
	// wake asks the server to wake the app of a service.
	wake func(ctx context.Context, svc string) error
	// lookup finds the service of a cluster IP and port.
	lookup func(ip net.IP, port int) (string, bool)
	// endpoints lists the ready endpoints ("ip:port") of a service.
	endpoints func(svc string) []string
	// poll is how often a held connection looks for an endpoint.
	poll time.Duration
	// origDst reads where a connection was going (originalDst; tests on
	// loopback, without a redirect, use the local address).
	origDst func(*net.TCPConn) (*net.TCPAddr, error)

	// mu protects held and woken.
	mu    sync.Mutex
	held  map[string]int
	woken map[string]time.Time
	wg    sync.WaitGroup
}

// errHeldFull and errNoEndpoint are why a connection is reset.
var (
	errHeldFull   = errors.New("too many connections held")
	errNoEndpoint = errors.New("no endpoint became ready in time")
)

func newActivator(log *slog.Logger, cfg ActivatorConfig) (*activator, error) {
	if cfg.MaxHeld <= 0 {
		cfg.MaxHeld = 100
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 30 * time.Second
	}
	// Every address: the redirect lands on the address of the interface a
	// pod's connection came in on (the bridge), or 127.0.0.1 for the node's.
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{})
	if err != nil {
		return nil, fmt.Errorf("activator: listen: %w", err)
	}
	return &activator{log: log.With("part", "activator"), ln: ln, cfg: cfg, poll: 20 * time.Millisecond,
		origDst: originalDst, held: map[string]int{}, woken: map[string]time.Time{}}, nil
}

// port is the port the load balancer redirects to.
func (a *activator) port() int { return a.ln.Addr().(*net.TCPAddr).Port }

// serve accepts until ctx ends, then closes the listener and waits for
// every held or forwarded connection to end.
func (a *activator) serve(ctx context.Context) {
	go func() {
		<-ctx.Done()
		a.ln.Close()
	}()
	for {
		c, err := a.ln.AcceptTCP()
		if err != nil {
			if ctx.Err() == nil {
				a.log.Warn("accept failed; activator stops", "err", err)
			}
			break
		}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.handle(ctx, c)
		}()
	}
	a.wg.Wait()
}

// handle holds c until its service has an endpoint, then forwards it.
func (a *activator) handle(ctx context.Context, c *net.TCPConn) {
	dst, err := a.origDst(c)
	if err != nil {
		a.log.Warn("connection without an original destination; reset", "err", err)
		reset(c)
		return
	}
	svc, ok := a.lookup(dst.IP, dst.Port)
	if !ok {
		a.log.Warn("connection to no known service; reset", "dst", dst.String())
		reset(c)
		return
	}
	if !a.enter(svc) {
		a.log.Warn("connection reset", "service", svc, "err", errHeldFull, "max_held", a.cfg.MaxHeld)
		reset(c)
		return
	}
	ep, err := a.await(ctx, svc)
	a.leave(svc)
	if err != nil {
		a.log.Warn("connection reset", "service", svc, "err", err, "max_wait", a.cfg.MaxWait)
		reset(c)
		return
	}
	up, err := net.DialTimeout("tcp4", ep, 5*time.Second)
	if err != nil {
		a.log.Warn("connection reset: dial endpoint", "service", svc, "endpoint", ep, "err", err)
		reset(c)
		return
	}
	splice(c, up.(*net.TCPConn))
}

func (a *activator) enter(svc string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.held[svc] >= a.cfg.MaxHeld {
		return false
	}
	a.held[svc]++
	return true
}

func (a *activator) leave(svc string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.held[svc]--; a.held[svc] <= 0 {
		delete(a.held, svc)
	}
}

// heldNow is how many connections wait, over every service.
func (a *activator) heldNow() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, k := range a.held {
		n += k
	}
	return n
}

// await wakes svc's app (at most once a second per service, again while it
// waits) and returns a ready endpoint, or an error after MaxWait.
func (a *activator) await(ctx context.Context, svc string) (string, error) {
	deadline := time.NewTimer(a.cfg.MaxWait)
	defer deadline.Stop()
	tick := time.NewTicker(a.poll)
	defer tick.Stop()
	for {
		if eps := a.endpoints(svc); len(eps) > 0 {
			return eps[rand.IntN(len(eps))], nil
		}
		a.askWake(ctx, svc)
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-deadline.C:
			return "", errNoEndpoint
		case <-tick.C:
		}
	}
}

func (a *activator) askWake(ctx context.Context, svc string) {
	a.mu.Lock()
	if time.Since(a.woken[svc]) < time.Second {
		a.mu.Unlock()
		return
	}
	a.woken[svc] = time.Now()
	a.mu.Unlock()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := a.wake(wctx, svc); err != nil && ctx.Err() == nil {
			a.log.Warn("wake failed", "service", svc, "err", err)
		}
	}()
}

// splice copies both ways until both sides are done, then closes both.
func splice(a, b *net.TCPConn) {
	var wg sync.WaitGroup
	one := func(dst, src *net.TCPConn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		_ = dst.CloseWrite()
	}
	wg.Add(2)
	go one(a, b)
	go one(b, a)
	wg.Wait()
	a.Close()
	b.Close()
}

// reset closes c with a TCP reset, so that the client fails at once.
func reset(c *net.TCPConn) {
	_ = c.SetLinger(0)
	c.Close()
}

// originalDst reads the destination a connection had before the redirect.
func originalDst(c *net.TCPConn) (*net.TCPAddr, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var addr *net.TCPAddr
	var serr error
	err = rc.Control(func(fd uintptr) {
		// struct sockaddr_in fits in the 16 bytes of an IPv6 mreq's
		// address: the usual way to read SO_ORIGINAL_DST from Go.
		m, err := unix.GetsockoptIPv6Mreq(int(fd), syscall.IPPROTO_IP, unix.SO_ORIGINAL_DST)
		if err != nil {
			serr = err
			return
		}
		b := m.Multiaddr
		addr = &net.TCPAddr{IP: net.IPv4(b[4], b[5], b[6], b[7]).To4(), Port: int(binary.BigEndian.Uint16(b[2:4]))}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return nil, fmt.Errorf("SO_ORIGINAL_DST: %w", err)
	}
	return addr, nil
}

// activatorLookup finds a service by cluster IP and port in the services
// the load balancer holds.
func (l *lb) activatorLookup(ip net.IP, port int) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for name, s := range l.services {
		if s.Spec.Port == port && net.ParseIP(s.Status.ClusterIP).Equal(ip) {
			return name, true
		}
	}
	return "", false
}

// readyEndpoints lists a service's endpoints as "ip:port".
func (l *lb) readyEndpoints(svc string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.eps[svc]
	if e == nil {
		return nil
	}
	out := make([]string, 0, len(e.Endpoints))
	for _, ep := range e.Endpoints {
		out = append(out, net.JoinHostPort(ep.IP, strconv.Itoa(ep.Port)))
	}
	return out
}
