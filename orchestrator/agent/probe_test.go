package agent

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHTTPProbe runs a probe loop's kept connection (httpConn) against a
// real HTTP server: 2xx and 3xx pass (a redirect is not followed), 4xx and
// 5xx fail, a server slower than the timeout fails, the path goes as
// given (a missing slash added). Probes share one connection until it
// fails, the server closes it, or it is older than maxAge.
func TestHTTPProbe(t *testing.T) {
	var mu sync.Mutex // protects paths and conns
	var paths []string
	conns := map[string]int{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.RequestURI())
		conns[r.RemoteAddr]++
		mu.Unlock()
		switch r.URL.Path {
		case "/ok":
			w.Write([]byte("ok"))
		case "/big":
			w.Write([]byte(strings.Repeat("x", 100<<10))) // longer than what is read
		case "/moved":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		case "/slow":
			time.Sleep(300 * time.Millisecond)
		default:
			http.Error(w, "no", http.StatusInternalServerError)
		}
	}))
	srv.Start()
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	connCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(conns)
	}
	var hc httpConn
	defer hc.close()
	tests := []struct {
		name, path string
		timeout    time.Duration
		pass       bool
		newConns   int // connections dialled by this probe
	}{
		{"200", "/ok", time.Second, true, 1},
		{"no slash, same connection", "ok?x=1", time.Second, true, 0},
		{"302 not followed", "/moved", time.Second, true, 0},
		{"500", "/fail", time.Second, false, 0},
		{"a long body drops the connection", "/big", time.Second, true, 0},
		{"then a new one", "/ok", time.Second, true, 1},
		{"slower than the timeout", "/slow", 100 * time.Millisecond, false, 0},
		{"a timeout drops the connection", "/ok", time.Second, true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := connCount()
			err := hc.get(context.Background(), time.Now().Add(tt.timeout), addr, tt.path)
			if (err == nil) != tt.pass {
				t.Fatalf("probe %s: %v, want pass %v", tt.path, err, tt.pass)
			}
			if got := connCount() - before; got != tt.newConns {
				t.Fatalf("probe %s dialled %d connections, want %d", tt.path, got, tt.newConns)
			}
		})
	}

	// The server closes its idle connections: the next probe dials again
	// and passes. A connection older than maxAge is replaced.
	srv.CloseClientConnections()
	before := connCount()
	if err := hc.get(context.Background(), time.Now().Add(time.Second), addr, "/ok"); err != nil || connCount() != before+1 {
		t.Fatalf("after the server closed the connection: %v, %d new connections", err, connCount()-before)
	}
	hc.maxAge = time.Nanosecond
	before = connCount()
	if err := hc.get(context.Background(), time.Now().Add(time.Second), addr, "/ok"); err != nil || connCount() != before+1 {
		t.Fatalf("past maxAge: %v, %d new connections, want 1", err, connCount()-before)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(strings.Join(paths, " "), "/ok /ok?x=1 /moved /fail /big /ok /slow /ok") {
		t.Errorf("paths asked %v", paths)
	}
}

// TestOnBeat: a steady probe waits for the next multiple of its period
// (at least half a period away); quick re-probes are not moved.
func TestOnBeat(t *testing.T) {
	base := time.Unix(1000, 0)
	for _, tt := range []struct {
		at, d, period, want time.Duration
	}{
		{5 * time.Millisecond, time.Second, time.Second, 995 * time.Millisecond},
		{400 * time.Millisecond, time.Second, time.Second, 600 * time.Millisecond},
		{700 * time.Millisecond, time.Second, time.Second, 1300 * time.Millisecond},
		{0, time.Second, time.Second, time.Second},
		{1200 * time.Millisecond, 5 * time.Second, 5 * time.Second, 3800 * time.Millisecond},
		{5 * time.Millisecond, 100 * time.Millisecond, time.Second, 100 * time.Millisecond},
	} {
		if got := onBeat(base.Add(tt.at), tt.d, tt.period); got != tt.want {
			t.Errorf("onBeat(+%v, %v, %v) = %v, want %v", tt.at, tt.d, tt.period, got, tt.want)
		}
	}
}
