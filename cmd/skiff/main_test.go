package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/cli"
	"github.com/skiff-edge/skiff/orchestrator/client"
	"github.com/skiff-edge/skiff/orchestrator/nettest"
)

// skiffBin is the binary built once for the end-to-end tests.
var skiffBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "skiff-cli-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	skiffBin = filepath.Join(dir, "skiff")
	out, err := exec.Command("go", "build", "-tags", "seccomp", "-o", skiffBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build skiff: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is what a run of the binary did.
type result struct {
	stdout, stderr string
	code           int
}

// skiff runs the binary with args against api and waits for it.
func skiff(t *testing.T, api string, args ...string) result {
	t.Helper()
	return skiffIn(t, api, nil, "", args...)
}

// skiffIn is skiff with extra environment variables and a standard input.
func skiffIn(t *testing.T, api string, env []string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, skiffBin, args...)
	cmd.Env = append(append(os.Environ(), "SKIFF_API="+api), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("run skiff %v: %v", args, err)
	}
	return r
}

// must runs skiff and fails the test unless it exits 0.
func must(t *testing.T, api string, args ...string) string {
	t.Helper()
	r := skiff(t, api, args...)
	if r.code != 0 {
		t.Fatalf("skiff %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// startServer runs `skiff server` with fresh data and run directories and
// returns its API address once it answers. The server is stopped with
// SIGTERM at the end of the test.
func startServer(t *testing.T) string {
	addr, _ := startServerArgs(t)
	return addr
}

// startServerArgs is startServer with more server flags; it also returns
// the data directory.
func startServerArgs(t *testing.T, extra ...string) (addr, dataDir string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "skiff-cli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	dataDir = filepath.Join(dir, "data")
	args := append([]string{"server", "--data-dir", dataDir, "--run-dir", filepath.Join(dir, "run"),
		"--config", filepath.Join(dir, "config.toml")}, extra...)
	cmd := exec.Command(skiffBin, args...)
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte("node_name = \"cli-test\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// exited is closed once the server is reaped; waitErr is its result.
	// A closed channel (not a one-shot send) so that both the readiness
	// loop and the cleanup can see the exit.
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("skiff server did not stop on SIGTERM")
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "server.log"))
			t.Logf("server log:\n%s", b)
		}
	})
	addr = "unix://" + filepath.Join(dir, "run", "skiff.sock")
	c, err := client.New(addr, "")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-exited:
			b, _ := os.ReadFile(filepath.Join(dir, "server.log"))
			t.Fatalf("skiff server exited: %v\n%s", waitErr, b)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ready(ctx)
		cancel()
		if err == nil {
			return addr, dataDir
		}
		if time.Now().After(deadline) {
			t.Fatalf("skiff server did not answer within 20s: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // poll interval, not a condition
	}
}

const webManifest = `
[app.web]
replicas = 2

[app.web.container.http]
image = "registry.local:5000/echo:1.2"
args = ["-listen", ":8080"]
ports = { http = 8080 }
cpu = 0.25
memory = "64Mi"

[service.web]
app = "web"
port = 80
target_port = "http"
type = "node-port"
`

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCLI drives a real server through the real binary, step by step.
func TestCLI(t *testing.T) {
	addr := startServer(t)
	dir := t.TempDir()
	web := writeFile(t, dir, "web.toml", webManifest)

	steps := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"dry run changes nothing", func(t *testing.T) {
			out := must(t, addr, "apply", "-f", web, "--dry-run")
			if !strings.Contains(out, "app/web created (dry run)") {
				t.Errorf("dry run said %q", out)
			}
			if out := must(t, addr, "get", "apps"); !strings.Contains(out, "No apps found.") {
				t.Errorf("after a dry run: %q", out)
			}
		}},
		{"apply creates", func(t *testing.T) {
			want := "app/web created\nservice/web created\n"
			if out := must(t, addr, "apply", "-f", web); out != want {
				t.Errorf("apply said %q, want %q", out, want)
			}
		}},
		{"re-apply is unchanged", func(t *testing.T) {
			want := "app/web unchanged\nservice/web unchanged\n"
			if out := must(t, addr, "apply", "-f", dir); out != want {
				t.Errorf("apply said %q, want %q", out, want)
			}
		}},
		{"edited apply configures", func(t *testing.T) {
			writeFile(t, dir, "web.toml", webManifest+"\n[app.web.container.http.env]\nGREETING = \"hi\"\n")
			want := "app/web configured\nservice/web unchanged\n"
			if out := must(t, addr, "apply", "-f", web); out != want {
				t.Errorf("apply said %q, want %q", out, want)
			}
		}},
		{"get json", func(t *testing.T) {
			var apps []api.App
			if err := json.Unmarshal([]byte(must(t, addr, "get", "apps", "-o", "json")), &apps); err != nil {
				t.Fatal(err)
			}
			if len(apps) != 1 || apps[0].Name != "web" || apps[0].Spec.Containers["http"].Env["GREETING"] != "hi" {
				t.Errorf("apps %+v", apps)
			}
			var svc api.Service
			if err := json.Unmarshal([]byte(must(t, addr, "get", "svc", "web", "-o", "json")), &svc); err != nil {
				t.Fatal(err)
			}
			if svc.Status.ClusterIP == "" || svc.Spec.Port != 80 {
				t.Errorf("service %+v", svc)
			}
		}},
		{"get wide", func(t *testing.T) {
			out := must(t, addr, "get", "pods", "-o", "wide")
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if !strings.HasPrefix(lines[0], "NAME ") || !strings.Contains(lines[0], "TEMPLATE") || !strings.Contains(lines[0], "CONTAINERS") {
				t.Errorf("header %q", lines[0])
			}
			if !strings.Contains(out, "http=registry.local:5000/echo:1.2") {
				t.Errorf("no container column in\n%s", out)
			}
			out = must(t, addr, "get", "services")
			if !strings.Contains(out, "node-port") || !strings.Contains(out, "80/tcp") {
				t.Errorf("services\n%s", out)
			}
		}},
		{"describe", func(t *testing.T) {
			out := must(t, addr, "describe", "app", "web")
			for _, want := range []string{"Name:              web", "Image:         registry.local:5000/echo:1.2", "Pods:", "Events:", "SuccessfulCreate"} {
				if !strings.Contains(out, want) {
					t.Errorf("describe app lacks %q:\n%s", want, out)
				}
			}
			out = must(t, addr, "describe", "service", "web")
			if !strings.Contains(out, "Type:              node-port") {
				t.Errorf("describe service:\n%s", out)
			}
		}},
		{"scale", func(t *testing.T) {
			if out := must(t, addr, "scale", "app", "web", "--replicas", "3"); out != "app/web scaled to 3\n" {
				t.Errorf("scale said %q", out)
			}
			var a api.App
			if err := json.Unmarshal([]byte(must(t, addr, "get", "app", "web", "-o", "json")), &a); err != nil {
				t.Fatal(err)
			}
			if a.Spec.Replicas == nil || *a.Spec.Replicas != 3 {
				t.Errorf("replicas %v", a.Spec.Replicas)
			}
		}},
		{"rollout history", func(t *testing.T) {
			out := must(t, addr, "rollout", "history", "app", "web")
			if !strings.HasPrefix(out, "REVISION") || strings.Count(out, "\n") < 3 {
				t.Errorf("history:\n%s", out)
			}
		}},
		{"rollout undo", func(t *testing.T) {
			if out := must(t, addr, "rollout", "undo", "app", "web"); out != "app/web rolled back\n" {
				t.Errorf("undo said %q", out)
			}
			var a api.App
			if err := json.Unmarshal([]byte(must(t, addr, "get", "app", "web", "-o", "json")), &a); err != nil {
				t.Fatal(err)
			}
			if env := a.Spec.Containers["http"].Env; env["GREETING"] != "" {
				t.Errorf("after undo the env is still %v", env)
			}
			if a.Spec.Replicas == nil || *a.Spec.Replicas != 3 {
				t.Errorf("undo changed replicas to %v", a.Spec.Replicas)
			}
		}},
		{"bad manifest applies nothing", func(t *testing.T) {
			bad := writeFile(t, t.TempDir(), "bad.toml", "[app.bad]\nreplicas = -1\ncolour = \"red\"\n\n[app.bad.container.c]\nimage = 3\n")
			r := skiff(t, addr, "apply", "-f", bad)
			if r.code != 1 || r.stdout != "" {
				t.Fatalf("exit %d stdout %q", r.code, r.stdout)
			}
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if len(lines) != 3 {
				t.Fatalf("want 3 error lines, got:\n%s", r.stderr)
			}
			for _, l := range lines {
				if !strings.HasPrefix(l, bad+":") {
					t.Errorf("line %q does not start with file:line:col", l)
				}
			}
			if !strings.HasPrefix(lines[0], bad+":2:12: app.bad.replicas") {
				t.Errorf("first line %q", lines[0])
			}
			if r := skiff(t, addr, "get", "app", "bad"); r.code != 1 || r.stderr != "skiff: app \"bad\" not found\n" {
				t.Errorf("get app bad: exit %d %q", r.code, r.stderr)
			}
		}},
		{"delete one", func(t *testing.T) {
			if out := must(t, addr, "delete", "service", "web"); out != "service/web deleted\n" {
				t.Errorf("delete said %q", out)
			}
			r := skiff(t, addr, "delete", "service", "web")
			if r.code != 1 || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "skiff: ") {
				t.Errorf("second delete: exit %d stderr %q", r.code, r.stderr)
			}
		}},
		{"delete -f", func(t *testing.T) {
			out := must(t, addr, "delete", "-f", web, "--ignore-not-found")
			if out != "app/web deleted\n" {
				t.Errorf("delete -f said %q", out)
			}
			if out := must(t, addr, "get", "apps"); !strings.Contains(out, "No apps found.") {
				t.Errorf("after delete: %q", out)
			}
		}},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.check) {
			return // later steps build on this one
		}
	}
}

// TestWatch follows pods with get -w while an app is applied and scaled.
func TestWatch(t *testing.T) {
	addr := startServer(t)
	web := writeFile(t, t.TempDir(), "web.toml", strings.Replace(webManifest, "replicas = 2", "replicas = 1", 1))
	must(t, addr, "apply", "-f", web)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, skiffBin, "get", "pods", "-w")
	cmd.Env = append(os.Environ(), "SKIFF_API="+addr)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	t.Cleanup(func() {
		cancel()
		<-done
	})
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				// The test is over and nobody reads: drain so that the
				// cleanup's <-done does not wait for a reader forever.
			}
		}
		close(lines)
		done <- cmd.Wait()
	}()
	var got []string
	next := func() string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("get -w ended; stderr %q", stderr.String())
			}
			got = append(got, l)
			return l
		case <-time.After(20 * time.Second):
			t.Fatalf("no line from get -w within 20s; got so far:\n%s", strings.Join(got, "\n"))
		}
		return ""
	}
	if h := next(); !strings.HasPrefix(h, "NAME ") {
		t.Fatalf("header %q", h)
	}
	first := strings.Fields(next())
	if len(first) == 0 || !strings.HasPrefix(first[0], "web-") {
		t.Fatalf("first pod row %q", first)
	}
	must(t, addr, "scale", "app", "web", "--replicas", "2")
	// The new pod appears as a row of its own.
	seen := map[string]bool{first[0]: true}
	for len(seen) < 2 {
		l := next()
		if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], "web-") {
			seen[f[0]] = true
		}
	}
}

// TestTCP reaches the API over TCP with a read token of `skiff token
// create` (the join token only joins), given by env, stdin or file, and
// fails with one line without the right one; the token subcommands list,
// revoke and rotate.
func TestTCP(t *testing.T) {
	tcp, gossip := nettest.Addr(t, "127.0.0.1"), nettest.Addr(t, "127.0.0.1")
	unix, dataDir := startServerArgs(t, "--listen-tcp", "--api-addr", tcp, "--gossip-addr", gossip)

	join := strings.TrimSpace(must(t, unix, "token", "--data-dir", dataDir))
	if !strings.HasPrefix(join, "K10") || !strings.Contains(join, "::") {
		t.Fatalf("token %q, want K10<ca hash>::<secret>", join)
	}
	token := strings.TrimSpace(must(t, unix, "token", "create", "--role", "read", "--description", "cli test"))
	hash, _, _ := strings.Cut(join, "::")
	if !strings.HasPrefix(token, hash+"::") || !strings.Contains(token, ".") {
		t.Fatalf("token create printed %q, want %s::<id>.<secret>", token, hash)
	}
	if r := skiffIn(t, unix, []string{"SKIFF_TOKEN=" + token}, "", "--api", "https://"+tcp, "get", "nodes"); r.code != 0 {
		t.Errorf("SKIFF_TOKEN: exit %d stderr %q", r.code, r.stderr)
	}
	if r := skiffIn(t, "https://"+tcp, nil, token+"\n", "--token-stdin", "get", "nodes"); r.code != 0 {
		t.Errorf("--token-stdin: exit %d stderr %q", r.code, r.stderr)
	}
	tokenFile := writeFile(t, t.TempDir(), "token", token+"\n")
	if r := skiff(t, "https://"+tcp, "--token-file", tokenFile, "get", "nodes"); r.code != 0 {
		t.Errorf("--token-file: exit %d stderr %q", r.code, r.stderr)
	}
	r := skiffIn(t, "https://"+tcp, []string{"SKIFF_TOKEN=" + token}, "", "apply", "-f", writeFile(t, t.TempDir(), "w.toml", webManifest))
	if r.code != 1 || !strings.Contains(r.stderr, "may not POST /v1/apply: a read token may only GET") {
		t.Errorf("apply with a read token: exit %d stderr %q", r.code, r.stderr)
	}
	r = skiffIn(t, "https://"+tcp, []string{"SKIFF_TOKEN=" + join}, "", "get", "nodes")
	if r.code != 1 || !strings.Contains(r.stderr, "the join token may not GET /v1/nodes: a join token may only join") {
		t.Errorf("get nodes with the join token: exit %d stderr %q", r.code, r.stderr)
	}
	r = skiffIn(t, "https://"+tcp, []string{"SKIFF_TOKEN=" + hash + "::0123456789abcdef0123"}, "", "get", "nodes")
	if r.code != 1 || r.stderr != "skiff: missing or wrong bearer token\n" {
		t.Errorf("wrong secret: exit %d stderr %q", r.code, r.stderr)
	}
	if out := must(t, unix, "members"); !strings.Contains(out, "alive") || !strings.Contains(out, "server") {
		t.Errorf("skiff members:\n%s", out)
	}

	id := strings.SplitN(strings.SplitN(token, "::", 2)[1], ".", 2)[0]
	if out := must(t, unix, "token", "list"); !strings.Contains(out, id) || !strings.Contains(out, "read") || !strings.Contains(out, "cli test") {
		t.Errorf("token list:\n%s", out)
	}
	if out := must(t, unix, "token", "revoke", id); out != "token "+id+" revoked\n" {
		t.Errorf("token revoke said %q", out)
	}
	r = skiffIn(t, "https://"+tcp, []string{"SKIFF_TOKEN=" + token}, "", "get", "nodes")
	if r.code != 1 || !strings.Contains(r.stderr, "unknown token or wrong secret") {
		t.Errorf("a revoked token: exit %d stderr %q", r.code, r.stderr)
	}
	rotated := strings.TrimSpace(must(t, unix, "token", "rotate"))
	if rotated == join || !strings.HasPrefix(rotated, hash+"::") {
		t.Errorf("token rotate printed %q", rotated)
	}
	if now := strings.TrimSpace(must(t, unix, "token", "--data-dir", dataDir)); now != rotated {
		t.Errorf("skiff token after the rotation prints %q, want %q", now, rotated)
	}
}

// TestTokenNeverInArgv: a token is never a flag's visible default (--help
// with SKIFF_TOKEN set does not print it), --token is refused with what to
// use instead, and an agent reads its token from SKIFF_TOKEN or stdin.
func TestTokenNeverInArgv(t *testing.T) {
	const secret = "K10deadbeef::sup3rs3cr3tvalue"
	for _, args := range [][]string{{"--help"}, {"agent", "--help"}, {"get", "--help"}} {
		r := skiffIn(t, "unix:///nonexistent.sock", []string{"SKIFF_TOKEN=" + secret}, "", args...)
		if r.code != 0 || strings.Contains(r.stdout+r.stderr, "sup3rs3cr3t") {
			t.Errorf("skiff %v: exit %d, output shows the token:\n%s%s", args, r.code, r.stdout, r.stderr)
		}
	}
	for _, args := range [][]string{{"--token", secret, "get", "nodes"}, {"agent", "--server", "127.0.0.1:1", "--token", secret}} {
		r := skiff(t, "unix:///nonexistent.sock", args...)
		if r.code != 2 || !strings.Contains(r.stderr, "--token puts the secret in argv") || !strings.Contains(r.stderr, "SKIFF_TOKEN") {
			t.Errorf("skiff %v: exit %d stderr %q, want 2 and what to use instead", args, r.code, r.stderr)
		}
	}
	r := skiffIn(t, "unix:///nonexistent.sock", nil, "", "--token-stdin", "get", "nodes")
	if r.code != 1 || !strings.Contains(r.stderr, "--token-stdin: standard input is empty") {
		t.Errorf("empty stdin: exit %d stderr %q", r.code, r.stderr)
	}
	r = skiffIn(t, "http://127.0.0.1:1", []string{"SKIFF_TOKEN=plain"}, "", "get", "nodes")
	if r.code != 1 || !strings.Contains(r.stderr, "never sent over plain http") {
		t.Errorf("token over http: exit %d stderr %q", r.code, r.stderr)
	}
}

// TestNoServer: one clear line and exit 1 when nothing listens.
func TestNoServer(t *testing.T) {
	addr := "unix://" + filepath.Join(t.TempDir(), "none.sock")
	r := skiff(t, addr, "get", "pods")
	want := "skiff: cannot reach the skiff API at " + addr + " (is skiff server running?)\n"
	if r.code != 1 || r.stderr != want {
		t.Errorf("exit %d stderr %q, want 1 %q", r.code, r.stderr, want)
	}
	r = skiff(t, "unix:///nonexistent/x.sock", "--api", addr, "apply", "-f", writeFile(t, t.TempDir(), "w.toml", webManifest))
	if r.code != 1 || r.stderr != want {
		t.Errorf("--api flag: exit %d stderr %q", r.code, r.stderr)
	}
}

// TestUsage checks that usage errors exit 2 and failures exit 1, in process.
func TestUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"unknown command", []string{"frobnicate"}, 2},
		{"unknown flag", []string{"get", "pods", "--bogus"}, 2},
		{"unknown kind", []string{"get", "deployments"}, 2},
		{"bad output", []string{"get", "pods", "-o", "yaml"}, 2},
		{"too many args", []string{"get", "pods", "a", "b"}, 2},
		{"apply without -f", []string{"apply"}, 2},
		{"scale without replicas", []string{"scale", "app", "web"}, 2},
		{"scale a pod", []string{"scale", "pod", "web", "--replicas", "1"}, 2},
		{"describe endpoints", []string{"describe", "endpoints", "web"}, 2},
		{"delete nothing", []string{"delete"}, 2},
		{"exec without dash", []string{"exec", "pod", "ls"}, 2},
		{"rollout bad kind", []string{"rollout", "status", "service", "web"}, 2},
		{"bad api address", []string{"--api", "tcp://x", "get", "pods"}, 1},
		{"images without a data dir", []string{"images", "ls", "--data-dir", "/nonexistent"}, 1},
		{"images with an empty node name", []string{"images", "pull", "busybox", "--nodes", "a,,b"}, 1},
		{"images --nodes without a server", []string{"--api", "unix:///nonexistent/skiff.sock", "images", "ls", "--nodes", "all"}, 1},
		{"token without server", []string{"token", "--data-dir", "/nonexistent"}, 1},
		{"help", []string{"get", "--help"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := newRootCmd()
			root.SetArgs(tt.args)
			root.SetOut(io.Discard)
			var stderr bytes.Buffer
			cmd, err := root.ExecuteC()
			if code := exitCode(&stderr, cmd, err, false); code != tt.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tt.code, stderr.String())
			}
			if tt.code != 0 && !strings.HasPrefix(stderr.String(), "skiff: ") {
				t.Errorf("stderr %q does not start with skiff:", stderr.String())
			}
		})
	}
}

// TestExitError: exec's command's exit code becomes skiff's.
func TestExitError(t *testing.T) {
	var stderr bytes.Buffer
	if code := exitCode(&stderr, &cobra.Command{}, &failure{&cli.ExitError{Code: 7}}, false); code != 7 || stderr.Len() != 0 {
		t.Errorf("exit %d stderr %q", code, stderr.String())
	}
	if code := exitCode(&stderr, &cobra.Command{}, &failure{context.Canceled}, true); code != 130 {
		t.Errorf("interrupted: exit %d", code)
	}
}

// TestServerBadConfig: a bad node config stops the server at once with
// every error at file:line:col, and a missing --config file is an error.
func TestServerBadConfig(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, dir, "config.toml", "node_nme = \"x\"\nmax_pods = 0\n")
	r := skiff(t, "", "server", "--config", bad, "--data-dir", filepath.Join(dir, "data"), "--run-dir", filepath.Join(dir, "run"))
	want := bad + ":1:1: node_nme: unknown key (did you mean \"node_name\"?)\n" + bad + ":2:12: max_pods: must be >= 1\n"
	if r.code != 1 || r.stderr != want {
		t.Errorf("exit %d stderr %q, want 1 %q", r.code, r.stderr, want)
	}
	r = skiff(t, "", "server", "--config", filepath.Join(dir, "missing.toml"))
	if r.code != 1 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "missing.toml") {
		t.Errorf("missing config: exit %d stderr %q", r.code, r.stderr)
	}
}
