package cluster

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// testIP returns a random loopback address so that concurrent test runs
// (and a real skiff on 0.0.0.0:7946) never collide.
func testIP() string {
	return fmt.Sprintf("127.%d.%d.%d", 1+rand.IntN(250), rand.IntN(250), 1+rand.IntN(250))
}

// testConfig returns an edge config for a member on its own loopback address
// with a free port.
func testConfig(t *testing.T, name string, key []byte) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeName = name + "-" + strconv.Itoa(rand.IntN(1e6))
	cfg.BindAddr = net.JoinHostPort(testIP(), "0")
	cfg.EncryptKey = key
	w := &testWriter{t: t}
	t.Cleanup(w.close)
	cfg.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return cfg
}

// testWriter sends logs to t.Log until the test ends: memberlist's
// goroutines may still log a line after Shutdown returns.
type testWriter struct {
	t *testing.T
	// mu guards closed.
	mu     sync.Mutex
	closed bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
}

func startMember(t *testing.T, cfg Config) *Member {
	t.Helper()
	m, err := Start(cfg)
	if err != nil {
		t.Fatalf("start %s: %v", cfg.NodeName, err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	return m
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitEvent reads m's events until one of typ about name arrives.
func waitEvent(t *testing.T, m *Member, typ EventType, name string, timeout time.Duration) Event {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-m.Events():
			if !ok {
				t.Fatalf("%s: events closed waiting for %s of %s", m.Name(), typ, name)
			}
			if ev.Type == typ && ev.Member.Name == name {
				return ev
			}
		case <-timer.C:
			t.Fatalf("%s: no %s event of %s within %s; members: %+v", m.Name(), typ, name, timeout, m.Members())
		}
	}
}

func find(members []MemberInfo, name string) (MemberInfo, bool) {
	for _, mi := range members {
		if mi.Name == name {
			return mi, true
		}
	}
	return MemberInfo{}, false
}

func statusOf(m *Member, name string) Status {
	mi, ok := find(m.Members(), name)
	if !ok {
		return ""
	}
	return mi.Status
}

// TestClusterLifecycle runs one small cluster through join, tag update,
// graceful leave and kill.
func TestClusterLifecycle(t *testing.T) {
	key := NewKey()
	scfg := testConfig(t, "server", key)
	scfg.Tags = Tags{Role: RoleServer, APIAddr: "127.0.0.1:7443", IP: "127.0.0.1"}
	s := startMember(t, scfg)

	var agents []*Member
	for i := range 3 {
		cfg := testConfig(t, fmt.Sprintf("agent%d", i), key)
		cfg.Tags = Tags{Role: RoleAgent, IP: "127.0.0.1", Labels: map[string]string{"site": "shop-1", "i": strconv.Itoa(i)}}
		a := startMember(t, cfg)
		// Each agent joins through the previous member: gossip spreads the rest.
		through := s.Addr()
		if i > 0 {
			through = agents[i-1].Addr()
		}
		if n, err := a.Join([]string{through}); err != nil || n != 1 {
			t.Fatalf("join: n=%d err=%v", n, err)
		}
		agents = append(agents, a)
	}
	all := append([]*Member{s}, agents...)

	t.Run("everyone sees everyone with tags", func(t *testing.T) {
		for _, m := range all {
			waitFor(t, m.Name()+" sees 4 alive members", 10*time.Second, func() bool {
				n := 0
				for _, mi := range m.Members() {
					if mi.Status == StatusAlive {
						n++
					}
				}
				return n == 4
			})
		}
		last := agents[2]
		mi, _ := find(last.Members(), s.Name())
		if mi.Role != RoleServer || mi.APIAddr != "127.0.0.1:7443" || mi.IP != "127.0.0.1" {
			t.Errorf("server as seen by %s: %+v", last.Name(), mi)
		}
		mi, _ = find(s.Members(), agents[1].Name())
		if mi.Role != RoleAgent || mi.Labels["site"] != "shop-1" || mi.Labels["i"] != "1" {
			t.Errorf("agent1 as seen by the server: %+v", mi)
		}
		if got := last.Servers(); len(got) != 1 || got[0] != "127.0.0.1:7443" {
			t.Errorf("Servers() = %v, want [127.0.0.1:7443]", got)
		}
	})

	t.Run("tag update propagates", func(t *testing.T) {
		a := agents[0]
		tags := a.Tags()
		tags.PodCIDR = "10.88.7.0/24"
		if err := a.SetTags(tags); err != nil {
			t.Fatal(err)
		}
		ev := waitEvent(t, s, EventUpdate, a.Name(), 10*time.Second)
		if ev.Member.PodCIDR != "10.88.7.0/24" {
			t.Errorf("update event carries %+v", ev.Member)
		}
		waitFor(t, "agent2 sees the pod CIDR", 10*time.Second, func() bool {
			mi, _ := find(agents[2].Members(), a.Name())
			return mi.PodCIDR == "10.88.7.0/24"
		})
	})

	t.Run("graceful leave gives a leave event", func(t *testing.T) {
		a := agents[1]
		if err := a.Leave(); err != nil {
			t.Fatal(err)
		}
		waitEvent(t, s, EventLeave, a.Name(), 10*time.Second)
		if st := statusOf(s, a.Name()); st != StatusLeft {
			t.Errorf("status after leave = %q, want left", st)
		}
		if err := a.Leave(); err != nil {
			t.Errorf("second Leave: %v", err)
		}
	})

	t.Run("kill gives a failed event", func(t *testing.T) {
		a := agents[2]
		start := time.Now()
		if err := a.Shutdown(); err != nil {
			t.Fatal(err)
		}
		// The edge profile detects in about a second; 10 s only bounds a
		// broken build (the benchmark measures the real figure).
		waitEvent(t, s, EventFailed, a.Name(), 10*time.Second)
		t.Logf("failed event %s after the kill", time.Since(start).Round(time.Millisecond))
		if st := statusOf(s, a.Name()); st != StatusFailed {
			t.Errorf("status after kill = %q, want failed", st)
		}
	})
}

func TestWrongKeyIsRefused(t *testing.T) {
	s := startMember(t, testConfig(t, "server", NewKey()))
	other := startMember(t, testConfig(t, "intruder", NewKey()))
	n, err := other.Join([]string{s.Addr()})
	if !errors.Is(err, ErrGossipKey) {
		t.Fatalf("join with another key: n=%d err=%v, want ErrGossipKey", n, err)
	}
	t.Logf("error: %v", err)
	if _, ok := find(s.Members(), other.Name()); ok {
		t.Errorf("the server lists the intruder: %+v", s.Members())
	}
	if _, ok := find(other.Members(), s.Name()); ok {
		t.Errorf("the intruder lists the server")
	}

	// Nobody listening: a plain join error, not a key error.
	l, err := net.Listen("tcp", net.JoinHostPort(testIP(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	free := l.Addr().String()
	_ = l.Close()
	if _, err := other.Join([]string{free}); !errors.Is(err, ErrJoin) || errors.Is(err, ErrGossipKey) {
		t.Errorf("join to nobody: %v, want ErrJoin", err)
	}
}

func TestKeyringAndSnapshotSurviveRestart(t *testing.T) {
	key := NewKey()
	s := startMember(t, testConfig(t, "server", key))

	dir := t.TempDir()
	cfg := testConfig(t, "agent", key)
	cfg.KeyringFile = filepath.Join(dir, "keyring")
	cfg.SnapshotPath = filepath.Join(dir, "snapshot")
	a := startMember(t, cfg)
	if _, err := a.Join([]string{s.Addr()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the server sees the agent", 10*time.Second, func() bool { return statusOf(s, a.Name()) == StatusAlive })

	fi, err := os.Stat(cfg.KeyringFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("keyring mode %v, want 0600", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(cfg.KeyringFile)
	var keys []string
	if err := json.Unmarshal(data, &keys); err != nil || len(keys) != 1 || keys[0] != base64.StdEncoding.EncodeToString(key) {
		t.Fatalf("keyring file %s: %v", data, err)
	}

	// Kill it, and start it again on the same address with no key but the
	// keyring file, and no Join: the snapshot brings it back.
	addr := a.Addr()
	if err := a.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, s, EventFailed, a.Name(), 10*time.Second)

	cfg.EncryptKey = nil
	cfg.BindAddr = addr
	a2 := startMember(t, cfg)
	waitEvent(t, s, EventJoin, a.Name(), 20*time.Second)
	if st := statusOf(s, a2.Name()); st != StatusAlive {
		t.Errorf("status after restart = %q", st)
	}
	// The server's join event can come before the agent's own push/pull
	// with it has listed the server: wait for that side too.
	waitFor(t, "the restarted agent lists the server", 10*time.Second, func() bool {
		_, ok := find(a2.Members(), s.Name())
		return ok
	})
}

func TestEventsNeverBlock(t *testing.T) {
	m := &Member{events: make(chan Event, 2)}
	for i := range 5 {
		m.send(Event{Type: EventJoin, Member: MemberInfo{Name: strconv.Itoa(i)}})
	}
	if m.Dropped() != 3 {
		t.Errorf("dropped %d, want 3", m.Dropped())
	}
	// The newest events are kept.
	if a, b := (<-m.events).Member.Name, (<-m.events).Member.Name; a != "3" || b != "4" {
		t.Errorf("kept %s, %s; want 3, 4", a, b)
	}
}

// TestServersAfterJoinServerDies: an agent that joined through one server
// learns the other from gossip and keeps it when the first dies.
func TestServersAfterJoinServerDies(t *testing.T) {
	key := NewKey()
	var servers []*Member
	for i, api := range []string{"127.0.0.1:17443", "127.0.0.2:17443"} {
		cfg := testConfig(t, fmt.Sprintf("server%d", i), key)
		cfg.Tags = Tags{Role: RoleServer, APIAddr: api}
		servers = append(servers, startMember(t, cfg))
	}
	if _, err := servers[1].Join([]string{servers[0].Addr()}); err != nil {
		t.Fatal(err)
	}
	a := startMember(t, testConfig(t, "agent", key))
	if _, err := a.Join([]string{servers[0].Addr()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the agent sees both servers", 10*time.Second, func() bool { return len(a.Servers()) == 2 })
	if err := servers[0].Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, a, EventFailed, servers[0].Name(), 10*time.Second)
	if got := a.Servers(); len(got) != 1 || got[0] != "127.0.0.2:17443" {
		t.Errorf("Servers() after the first died = %v", got)
	}
}

// TestStatusRunning: alive and suspect members run as far as the gossip
// knows; leaving, left and failed ones do not.
func TestStatusRunning(t *testing.T) {
	for s, want := range map[Status]bool{StatusAlive: true, StatusSuspect: true, StatusLeaving: false, StatusLeft: false, StatusFailed: false, "": false} {
		if got := s.Running(); got != want {
			t.Errorf("%q.Running() = %v, want %v", s, got, want)
		}
	}
}
