package agent

import (
	"context"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestActivator holds connections on real loopback sockets: past MaxHeld
// they are reset at once, the held ones wake the service once and are
// forwarded to the endpoint that appears, a service whose endpoint never
// comes is reset after MaxWait, and once the context ends no goroutine is
// left.
func TestActivator(t *testing.T) {
	before := runtime.NumGoroutine()
	// The backend: echoes what it reads.
	be, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	go func() {
		for {
			c, err := be.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()

	a, err := newActivator(slog.New(slog.DiscardHandler), ActivatorConfig{MaxHeld: 5, MaxWait: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var wakes atomic.Int32
	var ready atomic.Bool
	var svcFor atomic.Value
	svcFor.Store("web")
	a.wake = func(ctx context.Context, svc string) error { wakes.Add(1); return nil }
	// Without a redirect there is no original destination: the listener's.
	a.origDst = func(c *net.TCPConn) (*net.TCPAddr, error) { return c.LocalAddr().(*net.TCPAddr), nil }
	a.lookup = func(ip net.IP, port int) (string, bool) { return svcFor.Load().(string), port == a.port() }
	a.endpoints = func(svc string) []string {
		if svc == "web" && ready.Load() {
			return []string{be.Addr().String()}
		}
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { a.serve(ctx); close(served) }()
	addr := a.ln.Addr().String()

	// 8 connections while the service has no endpoint: 5 held, 3 reset.
	type result struct {
		echo string
		err  error
	}
	results := make(chan result, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp4", addr)
			if err != nil {
				results <- result{err: err}
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write([]byte("ping")); err != nil {
				results <- result{err: err}
				return
			}
			b := make([]byte, 4)
			_, err = io.ReadFull(c, b)
			results <- result{echo: string(b), err: err}
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for a.heldNow() < 5 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := a.heldNow(); got != 5 {
		t.Fatalf("%d held, want 5 (MaxHeld)", got)
	}
	ready.Store(true)
	wg.Wait()
	close(results)
	ok, reset := 0, 0
	for r := range results {
		switch {
		case r.err == nil && r.echo == "ping":
			ok++
		case r.err != nil:
			reset++
		}
	}
	if ok != 5 || reset != 3 {
		t.Errorf("%d forwarded, %d reset; want 5 and 3", ok, reset)
	}
	if w := wakes.Load(); w < 1 || w > 3 {
		t.Errorf("%d wake calls, want 1 (a few at most: once a second per service)", w)
	}

	// A service whose endpoint never comes: reset after MaxWait.
	svcFor.Store("never")
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	_, err = c.Read(make([]byte, 1))
	c.Close()
	if err == nil || time.Since(start) < 2*time.Second {
		t.Errorf("held for %v then %v; want a reset after MaxWait (2s)", time.Since(start), err)
	}
	if got := a.heldNow(); got != 0 {
		t.Errorf("%d still held", got)
	}

	cancel()
	<-served
	deadline = time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) { // the backend's accept loop and its conns end with be
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines after the activator stopped, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}
