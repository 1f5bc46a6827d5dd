package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/containers"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

// TestHostVolumesE2E runs a real node with host_volume_paths = [DIR/hv/].
// An apply of /etc is refused with the field and the rule. A symlink under
// the prefix that points to /etc passes the server (it checks the path as
// written) and is refused by the node at pod start: the pod stays Pending,
// its container waiting with StartError and the rule, and a Failed event
// says it. An allowed read-only volume is readable and not writable.
func TestHostVolumesE2E(t *testing.T) {
	n := newNode(t)
	hv := filepath.Join(n.dir, "hv")
	if err := os.MkdirAll(hv, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hv, "file"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(hv, "etc-link")
	if err := os.Symlink("/etc", link); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(n.cfgFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "host_volume_paths = [%q]\n", hv+"/")
	f.Close()
	n.start()

	app := func(name, path string, readOnly bool) string {
		return fmt.Sprintf(`
[app.%s.container.http]
image = "localhost/skiff-demo:1"
args = ["-listen", ":8080"]
mounts = { v = "/v" }

[app.%s.volume.v]
type = "host"
path = %q
read_only = %v
`, name, name, path, readOnly)
	}
	apply := func(manifest string) (string, error) {
		file := filepath.Join(n.dir, fmt.Sprintf("m-%d.toml", time.Now().UnixNano()))
		if err := os.WriteFile(file, []byte(manifest), 0o644); err != nil {
			t.Fatal(err)
		}
		return n.skiff("apply", "-f", file)
	}

	out, err := apply(app("bad", "/etc", false))
	if err == nil || !strings.Contains(out, `app.bad.volume.v.path`) ||
		!strings.Contains(out, fmt.Sprintf(`"/etc" is not under host_volume_paths [%q] of the server's node config`, hv+"/")) {
		t.Errorf("apply of /etc: %v\n%s", err, out)
	}

	if out, err := apply(app("ro", hv, true) + app("link", link, false)); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	pods := n.waitReady("ro", "", 1, 60*time.Second)
	out, err = n.skiff("exec", pods[0].Name, "--", "cat", "/v/file")
	if err != nil || out != "from the host\n" {
		t.Errorf("read the read-only volume: %v %q", err, out)
	}
	out, err = n.skiff("exec", pods[0].Name, "--", "sh", "-c", "echo x > /v/new")
	if err == nil || !strings.Contains(out, "Read-only file system") {
		t.Errorf("write the read-only volume: %v %q, want EROFS", err, out)
	}

	rule := fmt.Sprintf(`host path %q resolves to "/etc", which is not under host_volume_paths [%q]`, link, hv+"/")
	var pod api.Pod
	n.waitFor("the link pod refused", 30*time.Second, func() (bool, error) {
		ps := n.pods("link")
		if len(ps) != 1 || len(ps[0].Status.Containers) != 1 {
			return false, nil
		}
		pod = ps[0]
		cs := ps[0].Status.Containers[0]
		return cs.Reason == containers.ReasonStartFail && strings.Contains(cs.Message, rule), nil
	})
	if pod.Status.Phase != api.PodPending || pod.Status.Ready {
		t.Errorf("refused pod: status %+v, want Pending", pod.Status)
	}
	n.waitFor("a Failed event", 10*time.Second, func() (bool, error) {
		evs, err := n.c.ListEvents(context.Background(), api.KindPod+"/"+pod.Name)
		if err != nil {
			return false, err
		}
		for _, ev := range evs.Items {
			if ev.Type == api.EventWarning && ev.Reason == "Failed" && strings.Contains(ev.Message, rule) {
				return true, nil
			}
		}
		return false, nil
	})
}
