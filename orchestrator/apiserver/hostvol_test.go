package apiserver

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/agent"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store/storetest"
)

// TestHostVolumePolicyAtApply: with the server's node policy wired in (as
// orchestrator.RunServer does), an apply or PUT of an app whose host
// volume the policy refuses is a 400 naming the volume's path field and
// the rule, and nothing is written; an allowed one is written.
func TestHostVolumePolicyAtApply(t *testing.T) {
	st := storetest.Open(t)
	node := configs.DefaultNodeConfig()
	node.HostVolumePaths = []string{"/srv/"}
	s := New(st, Options{CheckHostPath: agent.HostPathPolicy(node).Check})

	app := func(path string) string {
		return `{"replicas":1,"containers":{"c":{"image":"img:1","mounts":{"v":"/v","data":"/data"}}},` +
			`"volumes":{"data":{"type":"host","path":"/srv/data","read_only":true},"v":{"type":"host","path":"` + path + `"}}}`
	}
	tests := []struct {
		name, path string
		want       []api.FieldDetail // nil: allowed
	}{
		{"outside the prefixes", "/etc", []api.FieldDetail{{Field: "app.web.volume.v.path",
			Message: `"/etc" is not under host_volume_paths ["/srv/"] of the server's node config`}}},
		{"the root", "/", []api.FieldDetail{{Field: "app.web.volume.v.path",
			Message: `"/" contains skiff's data dir "/var/lib/skiff" of the server's node config`}}},
		{"the API socket", "/run/skiff/skiff.sock", []api.FieldDetail{{Field: "app.web.volume.v.path",
			Message: `"/run/skiff/skiff.sock" is skiff's API socket "/run/skiff/skiff.sock" of the server's node config`}}},
		{"a sibling of the prefix", "/srvx", []api.FieldDetail{{Field: "app.web.volume.v.path",
			Message: `"/srvx" is not under host_volume_paths ["/srv/"] of the server's node config`}}},
		{"allowed", "/srv/x", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, req := range []struct{ method, target, body string }{
				{"POST", "/v1/apply", `{"apps":{"web":` + app(tt.path) + `}}`},
				{"PUT", "/v1/apps/web", `{"spec":` + app(tt.path) + `}`},
			} {
				before := st.Rev()
				rec := serve(s, req.method, req.target, req.body)
				if tt.want == nil {
					if rec.Code != http.StatusOK && rec.Code != http.StatusCreated {
						t.Fatalf("%s %s: %d %s, want it written", req.method, req.target, rec.Code, rec.Body)
					}
					continue
				}
				var eb api.ErrorBody
				if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil {
					t.Fatal(err)
				}
				if rec.Code != http.StatusBadRequest || eb.Error.Code != api.CodeInvalid || eb.Error.Field != tt.want[0].Field ||
					!reflect.DeepEqual(eb.Error.Details, tt.want) {
					t.Errorf("%s %s: %d %s, want 400 with %+v", req.method, req.target, rec.Code, rec.Body, tt.want)
				}
				if st.Rev() != before {
					t.Errorf("%s %s: a refused app was written", req.method, req.target)
				}
			}
		})
	}
}
