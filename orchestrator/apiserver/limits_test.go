package apiserver

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
	"github.com/skiff-edge/skiff/orchestrator/store/storetest"
)

// newLimitServer is a Server with lim, and an HTTP server in front of it
// that gives each request the admin token identity named by its
// X-Test-Client header (as TCPHandler would after authenticating it).
func newLimitServer(t *testing.T, lim Limits) (*Server, *httptest.Server) {
	t.Helper()
	st := storetest.Open(t)
	_, err := st.Update(func(tx *store.Tx) error {
		return tx.Put(api.KindPod, &api.Pod{Meta: api.Meta{Name: "p1"}, Spec: api.PodSpec{App: "a", Node: "n1"}})
	})
	if err != nil {
		t.Fatal(err)
	}
	s := New(st, Options{Limits: lim})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := Identity{Role: api.RoleAdmin, Token: r.Header.Get("X-Test-Client")}
		s.ServeHTTP(w, r.WithContext(withIdentity(r.Context(), id)))
	}))
	t.Cleanup(hs.Close)
	return s, hs
}

// stream opens a streaming GET as client and returns the status, the
// error code of a refusal, and a func that ends the stream (the client
// goes away).
func stream(t *testing.T, hs *httptest.Server, client, path string) (status int, code string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", hs.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Test-Client", client)
	resp, err := hs.Client().Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		defer cancel()
		var eb api.ErrorBody
		if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil {
			t.Fatalf("%s: status %d with a body that is not the error JSON: %v", path, resp.StatusCode, err)
		}
		return resp.StatusCode, eb.Error.Code, func() {}
	}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	return resp.StatusCode, "", func() { cancel(); resp.Body.Close() }
}

// streamEventually opens a stream as client until it is accepted: the
// server frees a slot once it has seen the client go, a moment after.
func streamEventually(t *testing.T, hs *httptest.Server, client, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, code, _ := stream(t, hs, client, path)
		if status == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s as %s: still %d %s after the client closed a stream", path, client, status, code)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testStreamLimit opens streams at path up to a per-client limit of 2 and
// a total of 3, and checks the 429s and that a closed stream frees its slot.
func testStreamLimit(t *testing.T, hs *httptest.Server, path string) {
	want := func(status int, code string, wantStatus int, what string) {
		t.Helper()
		if status != wantStatus || (wantStatus == http.StatusTooManyRequests && code != api.CodeTooMany) {
			t.Fatalf("%s: status %d code %q, want %d", what, status, code, wantStatus)
		}
	}
	st, code, stopA1 := stream(t, hs, "a", path)
	want(st, code, 200, "a's first")
	st, code, _ = stream(t, hs, "a", path)
	want(st, code, 200, "a's second")
	st, code, _ = stream(t, hs, "a", path)
	want(st, code, 429, "a's third (per client)")
	st, code, _ = stream(t, hs, "b", path)
	want(st, code, 200, "b's first")
	st, code, _ = stream(t, hs, "c", path)
	want(st, code, 429, "c's first (in all)")

	stopA1() // the client goes away without a word
	streamEventually(t, hs, "a", path)
	st, code, _ = stream(t, hs, "a", path)
	want(st, code, 429, "a's third again")
}

func TestWatchLimit(t *testing.T) {
	_, hs := newLimitServer(t, Limits{MaxWatchesPerClient: 2, MaxWatches: 3})
	testStreamLimit(t, hs, "/v1/pods?watch=1")

	// The message names the limit and how to raise it.
	req, _ := http.NewRequest("GET", hs.URL+"/v1/apps?watch=1", nil)
	req.Header.Set("X-Test-Client", "a")
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var eb api.ErrorBody
	if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(eb.Error.Message, limitEnv.watchesPer) || !strings.Contains(eb.Error.Message, "admin token a") {
		t.Errorf("message %q: want the client and %s", eb.Error.Message, limitEnv.watchesPer)
	}
}

// followIO models a log that is followed: one line, then it waits for
// more until the reader is closed.
type followIO struct{ fakeIO }

func (followIO) Logs(_ context.Context, _ *api.Pod, _ string, _ int, follow bool) (io.ReadCloser, error) {
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte("start\n")) //nolint:errcheck // fails once the reader is closed
		if !follow {
			pw.Close()
		}
	}()
	return pr, nil
}

func TestLogFollowLimit(t *testing.T) {
	s, hs := newLimitServer(t, Limits{MaxLogFollowsPerClient: 2, MaxLogFollows: 3})
	s.SetPodIO(followIO{})
	testStreamLimit(t, hs, "/v1/pods/p1/logs?follow=1")
	// Reads that end with the log are not follows.
	st, code, _ := stream(t, hs, "a", "/v1/pods/p1/logs")
	if st != http.StatusOK {
		t.Errorf("a plain log read at the follow limit: %d %s, want 200", st, code)
	}
}

// TestLimitListener: connection N+1 waits until one of the N closes.
func TestLimitListener(t *testing.T) {
	s, _ := newLimitServer(t, Limits{MaxConnsTCP: 2, MaxConnsUnix: 2})
	tests := []struct {
		name   string
		listen func() (net.Listener, error)
		limit  func(net.Listener) net.Listener
	}{
		{"tcp", func() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }, s.LimitTCP},
		{"unix", func() (net.Listener, error) { return net.Listen("unix", filepath.Join(t.TempDir(), "s.sock")) }, s.LimitUnix},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := tc.listen()
			if err != nil {
				t.Fatal(err)
			}
			ln := tc.limit(raw)
			defer ln.Close()
			accepted := make(chan net.Conn, 3)
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					accepted <- c
				}
			}()
			for range 3 {
				c, err := net.Dial(raw.Addr().Network(), raw.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
			}
			next := func(within time.Duration) net.Conn {
				select {
				case c := <-accepted:
					return c
				case <-time.After(within):
					return nil
				}
			}
			first := next(5 * time.Second)
			if first == nil || next(5*time.Second) == nil {
				t.Fatal("the first two connections were not accepted")
			}
			if c := next(200 * time.Millisecond); c != nil {
				c.Close()
				t.Fatal("a third connection was accepted with two open, want it to wait")
			}
			first.Close()
			c := next(5 * time.Second)
			if c == nil {
				t.Fatal("the third connection was not accepted after one closed")
			}
			c.Close()
		})
	}
}

// TestLimitsFromEnv: an operator raises a limit through the service's
// environment; a value that is not a positive integer stops the start with
// the variable's name, and unset variables keep what was there.
func TestLimitsFromEnv(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	var l Limits
	if err := l.FromEnv(env(map[string]string{
		"SKIFF_API_MAX_CONNS_TCP":          "512",
		"SKIFF_API_MAX_WATCHES_PER_CLIENT": "4",
	})); err != nil {
		t.Fatal(err)
	}
	if l.MaxConnsTCP != 512 || l.MaxWatchesPerClient != 4 || l.MaxConnsUnix != 0 || l.MaxLogFollows != 0 {
		t.Errorf("limits %+v, want only MaxConnsTCP 512 and MaxWatchesPerClient 4 set", l)
	}
	for _, bad := range []string{"0", "-3", "many", "1.5"} {
		var l Limits
		err := l.FromEnv(env(map[string]string{"SKIFF_API_MAX_LOG_FOLLOWS": bad}))
		if err == nil || !strings.Contains(err.Error(), "SKIFF_API_MAX_LOG_FOLLOWS") {
			t.Errorf("SKIFF_API_MAX_LOG_FOLLOWS=%q: %v, want an error naming the variable", bad, err)
		}
	}
}
