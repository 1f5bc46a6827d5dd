package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// A 32-byte secret that must never be found in clear on disk or printed.
const e2eSecret = "s3cr3t-e2e-0123456789abcdefghij"

func filesManifest(color string) string {
	return fmt.Sprintf(`
[config.site]
files = { "app.conf" = "color = %s" }

[secret.db]
files = { "password" = %q }

[app.web]
replicas = 2
termination_grace = "2s"

[app.web.update]
max_surge = 1
max_unavailable = 0

[app.web.container.http]
image = "localhost/skiff-demo:1"
args = ["-listen", ":8080"]
ports = { http = 8080 }
mounts = { conf = "/etc/app", creds = "/run/creds" }
env_from = { DB_PASS = "secret:db/password" }

[app.web.container.http.readiness]
http_get = "/healthz"
port = "http"
period = "1s"

[app.web.volume.conf]
type = "config"
name = "site"

[app.web.volume.creds]
type = "secret"
name = "db"

[service.web]
app = "web"
port = 80
target_port = "http"
`, color, e2eSecret+"X")
}

// TestConfigsSecretsE2E runs a real node: a pod reads its config and its
// secret as files and the secret in its environment; the secret is not in
// the store file nor the agent's cache nor anywhere else on disk under the
// data dir in clear; `skiff get secrets` shows it redacted; a changed
// config rolls the app with zero failed requests through its service.
func TestConfigsSecretsE2E(t *testing.T) {
	if len(e2eSecret)+1 != 32 {
		t.Fatalf("the test secret is %d bytes, want 32", len(e2eSecret)+1)
	}
	n := newNode(t)
	n.start()
	apply := func(manifest string) {
		t.Helper()
		file := filepath.Join(n.dir, fmt.Sprintf("m-%d.toml", time.Now().UnixNano()))
		if err := os.WriteFile(file, []byte(manifest), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := n.skiff("apply", "-f", file); err != nil {
			t.Fatalf("apply: %v\n%s", err, out)
		}
	}
	start := time.Now()
	apply(filesManifest("blue"))
	pods := n.waitReady("web", "web", 2, 60*time.Second)
	t.Logf("apply -> 2 pods ready with their secret: %v", time.Since(start).Round(time.Millisecond))
	p := pods[0].Name
	for _, c := range []struct{ cmd, want string }{
		{"cat /etc/app/app.conf", "color = blue"},
		{"cat /run/creds/password", e2eSecret + "X"},
		{`echo -n "$DB_PASS"`, e2eSecret + "X"},
		{"grep -c ' /run/creds tmpfs ro' /proc/mounts", "1"},
	} {
		out, err := n.skiff("exec", p, "--", "sh", "-c", c.cmd)
		if err != nil || strings.TrimSpace(out) != c.want {
			t.Errorf("in the pod, %s: %v %q, want %q", c.cmd, err, out, c.want)
		}
	}
	out, err := n.skiff("exec", p, "--", "sh", "-c", "echo x > /run/creds/new")
	if err == nil || !strings.Contains(out, "Read-only file system") {
		t.Errorf("write the secret volume: %v %q, want EROFS", err, out)
	}

	out, err = n.skiff("get", "secrets")
	if err != nil || !strings.Contains(out, "password=<redacted, 32 bytes>") || strings.Contains(out, e2eSecret) {
		t.Errorf("skiff get secrets: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"get", "secrets", "-o", "json"}, {"get", "secret", "db", "-o", "wide"}, {"get", "apps", "-o", "json"}, {"get", "pods", "-o", "json"}} {
		if out, err := n.skiff(args...); err != nil || strings.Contains(out, e2eSecret) {
			t.Errorf("skiff %v: %v, or the secret in clear:\n%s", args, err, out)
		}
	}
	if out, err := n.skiff("get", "configs"); err != nil || !strings.Contains(out, "app.conf (12 bytes)") {
		t.Errorf("skiff get configs: %v\n%s", err, out)
	}

	// Nowhere on disk under the data dir in clear: the store, the agent's
	// cache, the pod directories (the secret volume is a tmpfs: its mount
	// is skipped, it is memory). The cache is written within a second of
	// a change: wait until it holds the pods, so that the grep sees them.
	n.waitFor("the agent cache to hold the pods", 20*time.Second, func() (bool, error) {
		b, err := os.ReadFile(filepath.Join(n.dataDir, "agent-cache.json"))
		return err == nil && bytes.Contains(b, []byte(pods[0].Name)), err
	})
	mounts := mountsUnder(n.dir)
	found := map[string]bool{}
	filepath.WalkDir(n.dataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && slices.Contains(mounts, path) {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() {
			if b, err := os.ReadFile(path); err == nil && bytes.Contains(b, []byte(e2eSecret)) {
				found[path] = true
			}
		}
		return nil
	})
	if len(found) > 0 {
		t.Errorf("the secret is in clear in %v", found)
	}
	for _, f := range []string{"state.db", "agent-cache.json"} {
		if _, err := os.Stat(filepath.Join(n.dataDir, f)); err != nil {
			t.Errorf("%s: %v (the grep proved nothing)", f, err)
		}
	}

	// A changed config rolls the app, with no failed request.
	before := pods[0].Spec.TemplateHash
	l := loop("http://" + n.vip("web") + "/")
	apply(filesManifest("red"))
	var now []api.Pod
	n.waitFor("the app rolled to the new config", 90*time.Second, func() (bool, error) {
		l, err := n.c.ListPods(context.Background(), "web", "")
		if err != nil || len(l.Items) != 2 {
			return false, err
		}
		now = l.Items
		for _, p := range now {
			if p.Spec.TemplateHash == before || p.Spec.Deleting != nil || !p.Status.Ready {
				return false, nil
			}
		}
		return true, nil
	})
	n.waitReady("web", "web", 2, 30*time.Second)
	ok, fail, errs := l.end()
	t.Logf("config change rollout under load: %d requests ok, %d failed", ok, fail)
	if fail > 0 || ok == 0 {
		t.Errorf("%d of %d requests failed during the rollout: %v", fail, ok+fail, errs)
	}
	if out, err := n.skiff("exec", now[0].Name, "--", "cat", "/etc/app/app.conf"); err != nil || out != "color = red" {
		t.Errorf("new config in the rolled pod: %v %q", err, out)
	}
}
