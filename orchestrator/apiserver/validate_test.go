package apiserver

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// recordingIO is a PodIO that records whether a log was asked for.
type recordingIO struct{ asked *bool }

func (r recordingIO) Logs(context.Context, *api.Pod, string, int, bool) (io.ReadCloser, error) {
	*r.asked = true
	return io.NopCloser(strings.NewReader("")), nil
}

func (r recordingIO) Exec(context.Context, *api.Pod, string, []string, io.Writer) (int, error) {
	*r.asked = true
	return 0, nil
}

const goodPod = `{"spec":{"app":"web","template_hash":"abc","node":"n1","containers":{"http":{"image":"echo:1","cpu":0.5}}}}`

// seedPod writes pod web-1 (containers http) bound to node n1 and returns
// the store's revision after it.
func seedPod(t *testing.T, s *Server, st *store.Store) int64 {
	t.Helper()
	if rec := serve(s, "PUT", "/v1/pods/web-1", goodPod); rec.Code != http.StatusCreated {
		t.Fatalf("PUT good pod: %d %s", rec.Code, rec.Body)
	}
	return st.Rev()
}

// TestWritePathsValidate sends each finding of the review to the API: every
// one is a 400 naming the field, and the store does not change.
func TestWritePathsValidate(t *testing.T) {
	big := strings.Repeat("x", 5000)
	tests := []struct {
		name, method, path, body string
		field                    string
		status                   int // default 400
	}{
		{name: "pod container name traversal", method: "PUT", path: "/v1/pods/web-2",
			body:  `{"spec":{"app":"web","containers":{"../../../../var/log/auth":{"image":"echo:1"}}}}`,
			field: `pod.web-2.container."../../../../var/log/auth"`},
		{name: "pod cpu 1e300", method: "PUT", path: "/v1/pods/web-2",
			body:  `{"spec":{"app":"web","containers":{"http":{"image":"echo:1","cpu":1e300}}}}`,
			field: "pod.web-2.container.http.cpu"},
		{name: "pod probe period 1ns", method: "PUT", path: "/v1/pods/web-2",
			body:  `{"spec":{"app":"web","containers":{"http":{"image":"echo:1","liveness":{"tcp":true,"port":80,"period":"1ns"}}}}}`,
			field: "pod.web-2.container.http.liveness.period"},
		{name: "pod bad image", method: "PUT", path: "/v1/pods/web-2",
			body:  `{"spec":{"app":"web","containers":{"http":{"image":"../x"}}}}`,
			field: "pod.web-2.container.http.image"},
		{name: "app cpu 1e300", method: "PUT", path: "/v1/apps/web",
			body:  `{"spec":{"containers":{"http":{"image":"echo:1","cpu":1e300}}}}`,
			field: "app.web.container.http.cpu"},
		{name: "app probe period 1ns", method: "PUT", path: "/v1/apps/web",
			body:  `{"spec":{"containers":{"http":{"image":"echo:1","readiness":{"tcp":true,"port":80,"period":"1ns"}}}}}`,
			field: "app.web.container.http.readiness.period"},
		{name: "app memory 17Ti", method: "PUT", path: "/v1/apps/web",
			body:  `{"spec":{"containers":{"http":{"image":"echo:1","memory":"17Ti"}}}}`,
			field: "app.web.container.http.memory"},
		{name: "apply cpu 1e300", method: "POST", path: "/v1/apply",
			body:  `{"apps":{"web":{"containers":{"http":{"image":"echo:1","cpu":1e300}}}}}`,
			field: "app.web.container.http.cpu"},
		{name: "apply probe period 1ns", method: "POST", path: "/v1/apply",
			body:  `{"apps":{"web":{"containers":{"http":{"image":"echo:1","startup":{"exec":["true"],"period":"1ns"}}}}}}`,
			field: "app.web.container.http.startup.period"},
		{name: "status unknown container", method: "PUT", path: "/v1/pods/web-1/status",
			body: `{"status":{"phase":"Running","containers":[{"name":"../../x","state":"running"}]}}`, field: "status.containers[0].name"},
		{name: "status phase", method: "PUT", path: "/v1/pods/web-1/status",
			body: `{"status":{"phase":"Exploded"}}`, field: "status.phase"},
		{name: "status restarts", method: "PUT", path: "/v1/pods/web-1/status",
			body: `{"status":{"containers":[{"name":"http","state":"running","restarts":-1}]}}`, field: "status.containers[0].restarts"},
		{name: "status message", method: "PUT", path: "/v1/pods/web-1/status",
			body: `{"status":{"message":"` + big + `"}}`, field: "status.message"},
		{name: "node capacity", method: "PUT", path: "/v1/nodes/n1",
			body: `{"status":{"capacity":{"milli_cpu":9223372036854775807,"memory":1}}}`, field: "status.capacity.milli_cpu"},
		{name: "node negative memory", method: "PUT", path: "/v1/nodes/n1",
			body: `{"status":{"allocatable":{"milli_cpu":1000,"memory":-1}}}`, field: "status.allocatable.memory"},
		{name: "node label", method: "PUT", path: "/v1/nodes/n1",
			body: `{"spec":{"labels":{"site":"a b"}}}`, field: "spec.labels.site"},
		{name: "node bad name", method: "PUT", path: "/v1/nodes/N..1", body: `{}`, field: "name"},
		{name: "event message", method: "POST", path: "/v1/events",
			body: `{"object":"pods/web-1","type":"Normal","reason":"Pulled","message":"` + big + `"}`, field: "message"},
		{name: "event object", method: "POST", path: "/v1/events",
			body: `{"object":"../../etc/passwd","type":"Normal","reason":"Pulled"}`, field: "object"},
		{name: "event type", method: "POST", path: "/v1/events",
			body: `{"object":"pods/web-1","type":"Fatal","reason":"Pulled"}`, field: "type"},
		{name: "event too large", method: "POST", path: "/v1/events",
			body:   `{"object":"pods/web-1","type":"Normal","reason":"x","message":"` + strings.Repeat("y", DefaultMaxBody) + `"}`,
			status: http.StatusRequestEntityTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, st := newTestServer(t, "10.96.0.0/16")
			rev := seedPod(t, s, st)
			rec := serve(s, tc.method, tc.path, tc.body)
			want := tc.status
			if want == 0 {
				want = http.StatusBadRequest
			}
			if rec.Code != want {
				t.Fatalf("status %d, want %d: %.300s", rec.Code, want, rec.Body)
			}
			if st.Rev() != rev {
				t.Errorf("store revision %d -> %d: a refused write changed the store", rev, st.Rev())
			}
			if tc.field == "" {
				return
			}
			var eb api.ErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil {
				t.Fatal(err)
			}
			if eb.Error.Field != tc.field {
				t.Errorf("field %q, want %q (%s)", eb.Error.Field, tc.field, eb.Error.Message)
			}
		})
	}
}

// TestValidWritesStillPass keeps the checks from refusing what agents and
// controllers send.
func TestValidWritesStillPass(t *testing.T) {
	s, st := newTestServer(t, "10.96.0.0/16")
	seedPod(t, s, st)
	for _, tc := range []struct{ method, path, body string }{
		{"PUT", "/v1/pods/web-1/status", `{"status":{"phase":"Running","ip":"10.88.0.5","ready":true,"containers":[{"name":"http","state":"running","ready":true,"restarts":2,"pid":42}]}}`},
		{"PUT", "/v1/nodes/n1", `{"spec":{"labels":{"site":"shop-1","example.com/zone":"a"}},"status":{"capacity":{"milli_cpu":4000,"memory":8589934592,"pods":110},"addresses":["10.0.0.5"],"api_addr":"10.0.0.5:7443","conditions":[{"type":"Ready","status":true}]}}`},
		{"POST", "/v1/events", `{"object":"pods/web-1","type":"Warning","reason":"BackOff","message":"restarting"}`},
	} {
		if rec := serve(s, tc.method, tc.path, tc.body); rec.Code >= 300 {
			t.Errorf("%s %s: %d %s", tc.method, tc.path, rec.Code, rec.Body)
		}
	}
}

// TestLogsContainerTraversal: a container name that is a path never
// reaches the node's PodIO.
func TestLogsContainerTraversal(t *testing.T) {
	s, st := newTestServer(t, "10.96.0.0/16")
	seedPod(t, s, st)
	var asked bool
	s.SetPodIO(recordingIO{&asked})
	for _, c := range []string{"../../x", "..%2F..%2F..%2Fvar%2Flog%2Fauth", "a/b"} {
		rec := serve(s, "GET", "/v1/pods/web-1/logs?container="+c, "")
		if rec.Code != http.StatusBadRequest {
			t.Errorf("logs?container=%s: %d %s, want 400", c, rec.Code, rec.Body)
		}
	}
	rec := serve(s, "POST", "/v1/pods/web-1/exec", `{"container":"../../x","command":["true"]}`)
	if rec.Code != http.StatusBadRequest {
		t.Errorf("exec container ../../x: %d %s, want 400", rec.Code, rec.Body)
	}
	if asked {
		t.Error("the PodIO was asked for a container named like a path")
	}
}
