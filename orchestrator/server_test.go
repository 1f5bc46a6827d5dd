package orchestrator_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

const webManifest = `{"apps":{"web":{"replicas":2,"containers":{"http":{"image":"registry.local:5000/echo:1","ports":{"http":8080}}}}},
 "services":{"web":{"app":"web","port":80,"target_port":"http","type":"node-port"}}}`

func apiErr(t *testing.T, data []byte) api.ErrorDetail {
	t.Helper()
	var b api.ErrorBody
	if err := json.Unmarshal(data, &b); err != nil || b.Error.Code == "" {
		t.Fatalf("not an error body: %s (%v)", data, err)
	}
	return b.Error
}

func TestAPISocketMode(t *testing.T) {
	s := startServer(t, serverOpts{})
	fi, err := os.Stat(filepath.Join(s.runDir, "skiff.sock"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want a socket with 0600", fi.Mode())
	}
}

func TestAPIApplyGetScaleDelete(t *testing.T) {
	s := startServer(t, serverOpts{})
	var res api.ApplyResponse

	s.mustDo("POST", "/v1/apply", `{"dry_run":true,`+webManifest[1:], 200, &res)
	if !res.DryRun || len(res.Results) != 2 || res.Results[0].Action != api.ActionCreated {
		t.Fatalf("dry run: %+v", res)
	}
	s.mustDo("GET", "/v1/apps/web", nil, 404, nil)

	s.mustDo("POST", "/v1/apply", webManifest, 200, &res)
	if res.Results[0].Action != "created" || res.Results[1].Action != "created" || res.Revision == 0 {
		t.Fatalf("first apply: %+v", res)
	}
	s.mustDo("POST", "/v1/apply", webManifest, 200, &res)
	if res.Results[0].Action != "unchanged" || res.Results[1].Action != "unchanged" {
		t.Fatalf("second apply: %+v", res)
	}
	var svc api.Service
	s.mustDo("GET", "/v1/services/web", nil, 200, &svc)
	if svc.Status.ClusterIP == "" || svc.Status.NodePort < 30000 {
		t.Fatalf("service not allocated: %+v", svc.Status)
	}
	changed := strings.Replace(webManifest, `"replicas":2`, `"replicas":3`, 1)
	s.mustDo("POST", "/v1/apply", changed, 200, &res)
	if res.Results[0].Action != "configured" || res.Results[1].Action != "unchanged" {
		t.Fatalf("changed apply: %+v", res)
	}
	var svc2 api.Service
	s.mustDo("GET", "/v1/services/web", nil, 200, &svc2)
	if svc2.Status != svc.Status {
		t.Fatalf("allocation moved on re-apply: %+v -> %+v", svc.Status, svc2.Status)
	}

	var app api.App
	s.mustDo("GET", "/v1/apps/web", nil, 200, &app)
	if *app.Spec.Replicas != 3 || app.Spec.Containers["http"].Image != "registry.local:5000/echo:1" {
		t.Fatalf("app %+v", app.Spec)
	}
	var apps api.List[api.App]
	s.mustDo("GET", "/v1/apps", nil, 200, &apps)
	if apps.Revision < res.Revision || len(apps.Items) == 0 || apps.Items[0].Name != "web" {
		t.Fatalf("list %+v", apps)
	}

	s.mustDo("POST", "/v1/apps/web/scale", `{"replicas":5}`, 200, &app)
	if *app.Spec.Replicas != 5 {
		t.Fatalf("scaled to %d", *app.Spec.Replicas)
	}
	var evs struct{ Items []api.Event }
	s.mustDo("GET", "/v1/events?object=apps/web", nil, 200, &evs)
	found := false
	for _, e := range evs.Items {
		found = found || e.Reason == "Scaled"
	}
	if !found {
		t.Fatalf("no Scaled event: %+v", evs.Items)
	}

	// The controller makes pods; with no node they stay unbound, and an
	// app delete removes them at once.
	waitFor(t, "5 pods of web", func() bool {
		var pods struct{ Items []api.Pod }
		s.mustDo("GET", "/v1/pods?app=web", nil, 200, &pods)
		return len(pods.Items) == 5
	})
	var del api.DeleteResponse
	s.mustDo("DELETE", "/v1/apps/web", nil, 200, &del)
	if del.PodsDeleted != 5 {
		t.Fatalf("delete: %+v", del)
	}
	s.mustDo("GET", "/v1/apps/web", nil, 404, nil)
	s.mustDo("DELETE", "/v1/services/web", nil, 200, nil)
	s.mustDo("DELETE", "/v1/services/web", nil, 404, nil)
}

// An app delete marks the pods on a Ready node for their agent and
// deletes the others.
func TestAPIDeleteGraceful(t *testing.T) {
	s := startServer(t, serverOpts{})
	now := time.Now().UTC()
	node := api.Node{Meta: api.Meta{Name: "n1"}, Status: api.NodeStatus{
		Capacity:    api.Resources{MilliCPU: 4000, Memory: 8 << 30, Pods: 100},
		Allocatable: api.Resources{MilliCPU: 4000, Memory: 8 << 30, Pods: 100},
		Addresses:   []string{"127.0.0.1"},
		Conditions:  []api.Condition{{Type: api.NodeReady, Status: true, LastHeartbeat: now, LastChange: now}},
	}}
	var got api.Node
	s.mustDo("PUT", "/v1/nodes/n1", node, 201, &got)
	if got.Spec.PodCIDR == "" {
		t.Fatal("no pod CIDR given at registration")
	}
	s.mustDo("POST", "/v1/apply", webManifest, 200, nil)
	var pods struct{ Items []api.Pod }
	waitFor(t, "2 pods bound to n1", func() bool {
		s.mustDo("GET", "/v1/pods?node=n1", nil, 200, &pods)
		return len(pods.Items) == 2
	})
	var del api.DeleteResponse
	s.mustDo("DELETE", "/v1/apps/web", nil, 200, &del)
	if del.PodsMarked != 2 {
		t.Fatalf("delete: %+v, want 2 pods marked", del)
	}
	var p api.Pod
	s.mustDo("GET", "/v1/pods/"+pods.Items[0].Name, nil, 200, &p)
	if p.Spec.Deleting == nil {
		t.Fatalf("pod not marked deleting: %+v", p.Spec)
	}
	// The agent reports status, then removes the pod.
	p.Status.Phase = api.PodSucceeded
	s.mustDo("PUT", "/v1/pods/"+p.Name+"/status", p, 200, nil)
	s.mustDo("GET", "/v1/pods/"+p.Name+"/logs", nil, 503, nil)
	s.mustDo("DELETE", "/v1/pods/"+p.Name, nil, 200, &del)
	if del.PodsDeleted != 1 {
		t.Fatalf("second delete of a marked pod: %+v", del)
	}
	s.mustDo("GET", "/v1/pods/"+p.Name, nil, 404, nil)
	other := pods.Items[1].Name
	s.mustDo("DELETE", "/v1/pods/"+other+"?force=true", nil, 200, nil)
	s.mustDo("GET", "/v1/pods/"+other, nil, 404, nil)
}

func TestAPIErrors(t *testing.T) {
	s := startServer(t, serverOpts{})
	s.mustDo("POST", "/v1/apply", webManifest, 200, nil)
	var app api.App
	// The app controller writes the app's status after the create: then
	// revision 1 is stale.
	waitFor(t, "app status", func() bool {
		s.mustDo("GET", "/v1/apps/web", nil, 200, &app)
		return app.Status.TemplateHash != ""
	})
	stale := app
	stale.Revision = 1
	big := `{"apps":{"x":{"containers":{"c":{"image":"a","args":["` + strings.Repeat("y", 2<<20) + `"]}}}}}`

	tests := []struct {
		name, method, path, body string
		status                   int
		code                     string
		field                    string // the first field, if any
		details                  int    // at least this many field errors
	}{
		{"invalid with every field", "POST", "/v1/apply",
			`{"apps":{"Bad":{"replicas":-1,"containers":{"c":{"image":""}}}}}`, 400, "invalid", "", 3},
		{"unknown field", "POST", "/v1/apply", `{"apps":{},"color":"blue"}`, 400, "invalid", "color", 1},
		{"unknown nested field", "PUT", "/v1/apps/web", `{"spec":{"containers":{"c":{"image":"a","imag":"b"}}}}`, 400, "invalid", "imag", 1},
		{"malformed JSON", "POST", "/v1/apply", `{"apps":`, 400, "invalid", "", 0},
		{"syntax error", "POST", "/v1/apply", `{"apps" 1}`, 400, "invalid", "", 0},
		{"wrong type", "POST", "/v1/apps/web/scale", `{"replicas":"many"}`, 400, "invalid", "replicas", 1},
		{"empty body", "PUT", "/v1/services/db", ``, 400, "invalid", "", 0},
		{"trailing data", "POST", "/v1/apps/web/scale", `{"replicas":1} {}`, 400, "invalid", "", 0},
		{"negative replicas", "POST", "/v1/apps/web/scale", `{"replicas":-1}`, 400, "invalid", "replicas", 1},
		{"name mismatch", "PUT", "/v1/apps/web", `{"name":"other","spec":{"containers":{"c":{"image":"a"}}}}`, 400, "invalid", "name", 1},
		{"bad since", "GET", "/v1/apps?watch=1&since=x", ``, 400, "invalid", "since", 1},
		{"node port out of range", "PUT", "/v1/services/np", `{"spec":{"app":"web","port":80,"type":"node-port","node_port":80}}`, 400, "invalid", "", 1},
		{"replicas over the server's cap", "POST", "/v1/apply", `{"apps":{"x":{"replicas":100000000,"containers":{"c":{"image":"a"}}}}}`, 400, "invalid", "app.x.replicas", 1},
		{"scale over the cap", "POST", "/v1/apps/web/scale", `{"replicas":100000000}`, 400, "invalid", "replicas", 1},
		{"null body", "PUT", "/v1/nodes/n1", `null`, 400, "invalid", "", 0},
		{"array body", "POST", "/v1/apply", `[]`, 400, "invalid", "", 0},
		{"too large", "POST", "/v1/apply", big, 413, "invalid", "", 0},
		{"missing app", "GET", "/v1/apps/nope", ``, 404, "not_found", "", 0},
		{"scale missing app", "POST", "/v1/apps/nope/scale", `{"replicas":1}`, 404, "not_found", "", 0},
		{"delete missing pod", "DELETE", "/v1/pods/nope", ``, 404, "not_found", "", 0},
		{"unknown path", "GET", "/v1/widgets", ``, 404, "not_found", "", 0},
		{"wrong method", "PATCH", "/v1/apps/web", `{}`, 405, "invalid", "", 0},
		{"wrong method on apply", "GET", "/v1/apply", ``, 405, "invalid", "", 0},
		{"stale revision put", "PUT", "/v1/apps/web", mustJSON(t, stale), 409, "conflict", "", 0},
		{"stale revision delete", "DELETE", "/v1/apps/web?revision=1", ``, 409, "conflict", "", 0},
		{"stale revision scale", "POST", "/v1/apps/web/scale", `{"replicas":1,"revision":1}`, 409, "conflict", "", 0},
		{"rollback without history", "POST", "/v1/apps/web/rollback", `{"template_hash":"nope"}`, 400, "invalid", "template_hash", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, data := s.do(tc.method, tc.path, tc.body)
			if code != tc.status {
				t.Fatalf("status %d %s, want %d", code, data, tc.status)
			}
			e := apiErr(t, data)
			if e.Code != tc.code {
				t.Fatalf("code %q, want %q", e.Code, tc.code)
			}
			if tc.field != "" && e.Field != tc.field {
				t.Fatalf("field %q, want %q (%s)", e.Field, tc.field, data)
			}
			if len(e.Details) < tc.details {
				t.Fatalf("%d details, want >= %d: %s", len(e.Details), tc.details, data)
			}
		})
	}
	// None of that wrote anything.
	var after api.App
	s.mustDo("GET", "/v1/apps/web", nil, 200, &after)
	if *after.Spec.Replicas != 2 {
		t.Fatalf("app changed by failed requests: %+v", after.Spec)
	}
}

// A manifest applies whole or not at all: a service whose cluster IP is
// taken fails the file, and the valid app in it is not written either.
func TestAPIApplyAllOrNothing(t *testing.T) {
	s := startServer(t, serverOpts{})
	s.mustDo("PUT", "/v1/services/a", `{"spec":{"app":"x","port":80,"cluster_ip":"10.96.7.7"}}`, 201, nil)
	code, data := s.do("POST", "/v1/apply", `{"apps":{"fresh":{"containers":{"c":{"image":"a"}}}},
		"services":{"b":{"app":"fresh","port":80,"cluster_ip":"10.96.7.7"}}}`)
	if code != 409 || apiErr(t, data).Code != "conflict" {
		t.Fatalf("clash: %d %s", code, data)
	}
	s.mustDo("GET", "/v1/apps/fresh", nil, 404, nil)
	s.mustDo("GET", "/v1/services/b", nil, 404, nil)
	code, data = s.do("POST", "/v1/apply", `{"services":{"c":{"app":"x","port":80,"cluster_ip":"192.168.1.1"}}}`)
	if code != 400 {
		t.Fatalf("cluster_ip outside the CIDR: %d %s", code, data)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not an assertion
	}
}

// watchStream opens a watch and returns its lines as events.
func watchStream(t *testing.T, s *server, path string) (<-chan api.WatchEvent, int, []byte) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://skiff"+path, nil)
	resp, err := s.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		defer resp.Body.Close()
		var b strings.Builder
		bufio.NewReader(resp.Body).WriteTo(&b)
		return nil, resp.StatusCode, []byte(b.String())
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Fatalf("content type %q", ct)
	}
	ch := make(chan api.WatchEvent, 100)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 4<<20)
		for sc.Scan() {
			var ev api.WatchEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Errorf("bad line %q: %v", sc.Text(), err)
				return
			}
			ch <- ev
		}
	}()
	return ch, 200, nil
}

func nextEvent(t *testing.T, ch <-chan api.WatchEvent) api.WatchEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch stream ended")
		}
		return ev
	case <-time.After(15 * time.Second):
		t.Fatal("no watch event within 15s")
	}
	return api.WatchEvent{}
}

func TestAPIWatch(t *testing.T) {
	s := startServer(t, serverOpts{compactAfter: 20})
	var n api.Node
	s.mustDo("PUT", "/v1/nodes/w0", api.Node{}, 201, &n)
	first := n.Revision
	s.mustDo("PUT", "/v1/nodes/w1", api.Node{}, 201, &n)

	// Resume from a revision: the events after it, then live ones.
	ch, code, body := watchStream(t, s, fmt.Sprintf("/v1/nodes?watch=1&since=%d", first-1))
	if code != 200 {
		t.Fatalf("watch: %d %s", code, body)
	}
	if ev := nextEvent(t, ch); ev.Revision != first || ev.Type != "put" || ev.Kind != "nodes" {
		t.Fatalf("first event %+v", ev)
	}
	if ev := nextEvent(t, ch); ev.Revision != n.Revision {
		t.Fatalf("second event %+v, want revision %d", ev, n.Revision)
	}
	s.mustDo("DELETE", "/v1/services/none", nil, 404, nil)
	s.mustDo("PUT", "/v1/nodes/w2", api.Node{}, 201, &n)
	if ev := nextEvent(t, ch); ev.Revision != n.Revision || !strings.Contains(string(ev.Object), `"w2"`) {
		t.Fatalf("live event %+v", ev)
	}

	// Filters apply to watches: pods of app a only.
	pch, _, _ := watchStream(t, s, "/v1/pods?watch=1&app=a")
	s.mustDo("PUT", "/v1/pods/p-b", `{"spec":{"app":"b","containers":{"c":{"image":"img"}}}}`, 201, nil)
	s.mustDo("PUT", "/v1/pods/p-a", `{"spec":{"app":"a","containers":{"c":{"image":"img"}}}}`, 201, nil)
	if ev := nextEvent(t, pch); !strings.Contains(string(ev.Object), `"p-a"`) {
		t.Fatalf("filtered watch got %s", ev.Object)
	}

	// Past compaction (20 events kept): 410 gone. Each PUT changes the
	// node: an unchanged one writes nothing (no event).
	for i := 0; i < 30; i++ {
		s.mustDo("PUT", "/v1/nodes/w1", api.Node{Spec: api.NodeSpec{Labels: map[string]string{"i": fmt.Sprint(i)}}}, 200, nil)
	}
	_, code, body = watchStream(t, s, fmt.Sprintf("/v1/nodes?watch=1&since=%d", first))
	if code != 410 || apiErr(t, body).Code != "gone" {
		t.Fatalf("watch from a compacted revision: %d %s", code, body)
	}
}

// TestAPITCPToken: on TCP every request but the health checks needs a
// credential; the join token only joins; a token of `skiff token create
// --role admin` (made over the unix socket) may do everything.
func TestAPITCPToken(t *testing.T) {
	s := startServer(t, serverOpts{tcp: true})
	out, err := exec.Command(skiffBin, "token", "--data-dir", s.dataDir).CombinedOutput()
	if err != nil {
		t.Fatalf("skiff token: %v\n%s", err, out)
	}
	tok, err := pki.ParseToken(string(out))
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(s.dataDir, "pki", pki.SecretFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("join secret file: %v %v", fi, err)
	}
	admin := s.createToken("admin")
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.ClientTLSConfig(tok)}}
	base := "https://" + s.tcpAddr
	bearer := func(v string) http.Header { return http.Header{"Authorization": {v}} }
	tests := []struct {
		name   string
		path   string
		hdr    http.Header
		status int
	}{
		{"no token", "/v1/apps", nil, 401},
		{"wrong token", "/v1/apps", bearer("Bearer nope"), 401},
		{"not bearer", "/v1/apps", bearer(tok.Secret), 401},
		{"whole token", "/v1/apps", bearer("Bearer " + tok.String()), 401},
		{"join secret is no admin", "/v1/apps", bearer("Bearer " + tok.Secret), 403},
		{"join secret reads no members", "/v1/members", bearer("Bearer " + tok.Secret), 403},
		{"admin token", "/v1/apps", bearer("Bearer " + admin.Secret), 200},
		{"admin token members", "/v1/members", bearer("Bearer " + admin.Secret), 200},
		{"healthz without token", "/healthz", nil, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, data := doOn(t, c, base, "GET", tc.path, nil, tc.hdr)
			if code != tc.status {
				t.Fatalf("%d %s, want %d", code, data, tc.status)
			}
			switch code {
			case 401:
				if apiErr(t, data).Code != "unauthorized" {
					t.Fatalf("body %s", data)
				}
			case 403:
				if e := apiErr(t, data); e.Code != "forbidden" || !strings.Contains(e.Message, "a join token may only join") {
					t.Fatalf("body %s", data)
				}
			}
		})
	}
}

func TestAPIMetrics(t *testing.T) {
	s := startServer(t, serverOpts{})
	code, data := s.do("GET", "/metrics", nil)
	if code != 200 || !strings.Contains(string(data), "skiff_store_revision ") || !strings.Contains(string(data), "process_resident_memory_bytes ") {
		t.Fatalf("metrics: %d %s", code, data)
	}
}

// A rollback puts the previous pod template back in the app's spec and
// keeps the replica count.
func TestAPIRollback(t *testing.T) {
	s := startServer(t, serverOpts{})
	v1 := strings.Replace(webManifest, "echo:1", "echo:2", 1)
	s.mustDo("POST", "/v1/apply", webManifest, 200, nil)
	var app api.App
	waitFor(t, "first template in history", func() bool {
		s.mustDo("GET", "/v1/apps/web", nil, 200, &app)
		return len(app.Status.History) == 1
	})
	s.mustDo("POST", "/v1/apply", v1, 200, nil)
	waitFor(t, "second template in history", func() bool {
		s.mustDo("GET", "/v1/apps/web", nil, 200, &app)
		return len(app.Status.History) == 2 && app.Status.TemplateHash == app.Status.History[1].TemplateHash
	})
	s.mustDo("POST", "/v1/apps/web/scale", `{"replicas":4}`, 200, nil)
	s.mustDo("POST", "/v1/apps/web/rollback", nil, 200, &app)
	if img := app.Spec.Containers["http"].Image; img != "registry.local:5000/echo:1" || *app.Spec.Replicas != 4 {
		t.Fatalf("after rollback: image %s, replicas %d", img, *app.Spec.Replicas)
	}
}
