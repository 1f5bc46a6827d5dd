package orchestrator_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// Every write the server acknowledged survives a kill -9 of the server in
// the middle of a stream of writes.
func TestKill9KeepsAcknowledgedWrites(t *testing.T) {
	s := startServer(t, serverOpts{})
	const writers = 4
	type ack struct {
		name  string
		value string
		rev   int64
	}
	var (
		mu    sync.Mutex // protects acked
		acked []ack
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// One more writer applies two-app files: after the crash each pair is
	// there whole or not at all.
	pairs := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ; ; pairs++ {
			select {
			case <-stop:
				return
			default:
			}
			body := fmt.Sprintf(`{"apps":{"pa-%d":{"replicas":0,"containers":{"c":{"image":"busybox:1"}}},
				"pb-%d":{"replicas":0,"containers":{"c":{"image":"busybox:1"}}}}}`, pairs, pairs)
			req, _ := http.NewRequest("POST", "http://skiff/v1/apply", stringReader(body))
			resp, err := s.http.Do(req)
			if err != nil {
				return
			}
			resp.Body.Close()
		}
	}()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("k9-%d-%d", w, i)
				value := fmt.Sprintf("v%d-%d", w, i)
				body := fmt.Sprintf(`{"spec":{"replicas":0,"containers":{"c":{"image":"busybox:1","env":{"V":%q}}}}}`, value)
				req, _ := http.NewRequest("PUT", "http://skiff/v1/apps/"+name, stringReader(body))
				resp, err := s.http.Do(req)
				if err != nil {
					return // the server died
				}
				var app api.App
				ok := resp.StatusCode == http.StatusCreated && decodeJSON(resp.Body, &app) == nil
				resp.Body.Close()
				if !ok {
					return
				}
				mu.Lock()
				acked = append(acked, ack{name, value, app.Revision})
				mu.Unlock()
			}
		}()
	}
	// Kill once a good number of writes were acknowledged.
	waitFor(t, "200 acknowledged writes", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 200
	})
	s.kill(syscall.SIGKILL)
	close(stop)
	wg.Wait()
	t.Logf("%d writes acknowledged before kill -9", len(acked))

	// Same directories: the dead server's socket is stale and is replaced.
	if _, err := os.Stat(filepath.Join(s.runDir, "skiff.sock")); err != nil {
		t.Fatalf("kill -9 should leave the socket behind: %v", err)
	}
	s2 := startServer(t, serverOpts{dataDir: s.dataDir, runDir: s.runDir})
	var list struct{ Items []api.App }
	s2.mustDo("GET", "/v1/apps", nil, 200, &list)
	byName := map[string]api.App{}
	var maxRev int64
	var nPairs int
	for _, a := range list.Items {
		byName[a.Name] = a
		if strings.HasPrefix(a.Name, "pa-") || strings.HasPrefix(a.Name, "pb-") {
			nPairs++
		}
	}
	for i := 0; i <= pairs; i++ {
		_, a := byName[fmt.Sprintf("pa-%d", i)]
		_, b := byName[fmt.Sprintf("pb-%d", i)]
		if a != b {
			t.Errorf("apply %d half there after the crash: pa %v, pb %v", i, a, b)
		}
	}
	t.Logf("%d two-app applies sent, %d apps of them found", pairs+1, nPairs)
	for _, a := range acked {
		got, ok := byName[a.name]
		if !ok {
			t.Errorf("acknowledged app %s (revision %d) lost", a.name, a.rev)
			continue
		}
		if v := got.Spec.Containers["c"].Env["V"]; v != a.value {
			t.Errorf("app %s: env V=%q, want %q", a.name, v, a.value)
		}
		maxRev = max(maxRev, a.rev)
	}
	// At most one write per writer was in flight: committed, not answered.
	if n := len(list.Items) - nPairs; n < len(acked) || n > len(acked)+writers {
		t.Errorf("%d apps after restart, %d acknowledged", len(list.Items), len(acked))
	}
	// The revision goes on from where it was.
	var n api.Node
	s2.mustDo("PUT", "/v1/nodes/after", api.Node{}, 201, &n)
	if n.Revision <= maxRev {
		t.Errorf("write after restart at revision %d, not above %d", n.Revision, maxRev)
	}
}

// SIGTERM ends the server cleanly even with a watch open: exit status 0,
// the socket gone, the store closed (a restart opens it at once).
func TestSIGTERMShutsDownCleanly(t *testing.T) {
	s := startServer(t, serverOpts{})
	ch, code, body := watchStream(t, s, "/v1/apps?watch=1&since=0")
	if code != 200 {
		t.Fatalf("watch: %d %s", code, body)
	}
	s.mustDo("POST", "/v1/apply", webManifest, 200, nil)
	nextEvent(t, ch)
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("server still running 10s after SIGTERM")
	}
	if !s.cmd.ProcessState.Success() {
		t.Fatalf("exit status %v", s.cmd.ProcessState)
	}
	if _, err := os.Stat(filepath.Join(s.runDir, "skiff.sock")); !os.IsNotExist(err) {
		t.Fatalf("socket left behind: %v", err)
	}
	for range ch { // the stream ended
	}
	s2 := startServer(t, serverOpts{dataDir: s.dataDir})
	s2.mustDo("GET", "/v1/apps/web", nil, 200, nil)
}

// A second server on the same directories refuses to start and leaves the
// first one serving.
func TestSecondServerRefused(t *testing.T) {
	s := startServer(t, serverOpts{})
	cfg := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(cfg, []byte("node_name = \"second\"\nadvertise_addr = \"127.0.0.1\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name            string
		dataDir, runDir string
	}{
		{"same socket", t.TempDir(), s.runDir},
		{"same store", s.dataDir, t.TempDir()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, skiffBin, "server", "--config", cfg, "--data-dir", tc.dataDir, "--run-dir", tc.runDir).CombinedOutput()
			if err == nil || ctx.Err() != nil {
				t.Fatalf("second server: %v (ctx %v)\n%s", err, ctx.Err(), out)
			}
			s.mustDo("GET", "/healthz", nil, 200, nil)
		})
	}
}
