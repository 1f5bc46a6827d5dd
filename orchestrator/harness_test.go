package orchestrator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/orchestrator/nettest"
)

// skiffBin is the skiff binary TestMain builds for every test here.
var skiffBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "skiff-orch-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	skiffBin = filepath.Join(dir, "skiff")
	args := []string{"build", "-tags", "seccomp", "-o", skiffBin} // pods need the seccomp filter
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "../cmd/skiff")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build skiff:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is a running `skiff server` process.
type server struct {
	t       testing.TB
	dataDir string
	runDir  string
	tcpAddr string
	cmd     *exec.Cmd
	log     *syncBuffer
	exited  chan struct{}
	http    *http.Client // over the unix socket
}

// serverOpts tune startServer.
type serverOpts struct {
	dataDir      string // reuse a data dir (restart); default a new one
	runDir       string // reuse a run dir (restart); default a new one
	tcp          bool
	compactAfter int
}

// startServer starts `skiff server` and waits until its API answers. The
// process is killed at the end of the test if it still runs.
func startServer(t testing.TB, o serverOpts) *server {
	t.Helper()
	base := t.TempDir()
	if o.dataDir == "" {
		o.dataDir = filepath.Join(base, "data")
	}
	if o.runDir == "" {
		o.runDir = filepath.Join(base, "run")
	}
	s := &server{t: t, dataDir: o.dataDir, runDir: o.runDir, log: &syncBuffer{}, exited: make(chan struct{})}
	cfgFile := filepath.Join(base, "config.toml")
	if err := os.WriteFile(cfgFile, []byte("node_name = \"test-server\"\nadvertise_addr = \"127.0.0.1\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"server", "--config", cfgFile, "--data-dir", s.dataDir, "--run-dir", s.runDir}
	if o.tcp {
		s.tcpAddr = nettest.Addr(t, "127.0.0.1")
		args = append(args, "--listen-tcp", "--api-addr", s.tcpAddr, "--gossip-addr", nettest.Addr(t, "127.0.0.1"))
	}
	s.cmd = exec.Command(skiffBin, args...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.Env = os.Environ()
	if o.compactAfter > 0 {
		s.cmd.Env = append(s.cmd.Env, fmt.Sprintf("SKIFF_STORE_COMPACT_AFTER=%d", o.compactAfter))
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() {
		s.kill(syscall.SIGKILL)
		if strings.Contains(s.log.String(), "WARNING: DATA RACE") {
			t.Error("the server hit a data race")
		}
		if t.Failed() {
			t.Logf("server log:\n%s", s.log.String())
		}
	})
	sock := filepath.Join(s.runDir, "skiff.sock")
	s.http = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := s.http.Get("http://skiff/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case <-s.exited:
			t.Fatalf("server exited at start:\n%s", s.log.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not serving after 30s: %v\n%s", err, s.log.String())
		}
	}
}

// kill sends sig and waits for the process to end.
func (s *server) kill(sig syscall.Signal) {
	select {
	case <-s.exited:
		return
	default:
	}
	s.cmd.Process.Signal(sig)
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
}

// do sends a request with a JSON body (a string or []byte is sent as is)
// and returns the status and the body.
func (s *server) do(method, path string, body any) (int, []byte) {
	s.t.Helper()
	return doOn(s.t, s.http, "http://skiff", method, path, body, nil)
}

func doOn(t testing.TB, c *http.Client, base, method, path string, body any, hdr http.Header) (int, []byte) {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, base+path, r)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, path, err)
	}
	return resp.StatusCode, data
}

// mustDo is do that fails the test on an unexpected status and decodes the
// answer into out (if not nil).
func (s *server) mustDo(method, path string, body any, want int, out any) {
	s.t.Helper()
	code, data := s.do(method, path, body)
	if code != want {
		s.t.Fatalf("%s %s: %d %s, want %d", method, path, code, data, want)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			s.t.Fatalf("%s %s: decode %s: %v", method, path, data, err)
		}
	}
}

// createToken makes a token of role with `skiff token create` over the
// server's unix socket and returns it parsed.
func (s *server) createToken(role string, extra ...string) pki.Token {
	s.t.Helper()
	out, err := exec.Command(skiffBin, append([]string{"--api", "unix://" + filepath.Join(s.runDir, "skiff.sock"),
		"token", "create", "--role", role}, extra...)...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("skiff token create --role %s: %v\n%s", role, err, out)
	}
	tok, err := pki.ParseToken(string(out))
	if err != nil {
		s.t.Fatalf("skiff token create printed %q: %v", out, err)
	}
	return tok
}

// syncBuffer is a bytes.Buffer safe for the process's writes and the test's
// reads at once.
type syncBuffer struct {
	mu sync.Mutex // protects b
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func stringReader(s string) io.Reader { return strings.NewReader(s) }

func decodeJSON(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }
