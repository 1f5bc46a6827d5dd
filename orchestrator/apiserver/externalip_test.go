package apiserver

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// TestExternalIPFromPools: a load-balancer service's external_ip must be in
// the server's [lb] pools, at apply and at PUT (the CVE-2020-8554 pattern:
// any address a manifest names would be captured by every node); with no
// pools none is allowed. A refused service is not written.
func TestExternalIPFromPools(t *testing.T) {
	svc := func(ip string) string {
		return `{"app":"web","port":80,"type":"load-balancer","external_ip":"` + ip + `"}`
	}
	tests := []struct {
		name  string
		pools []string
		ip    string
		want  string // "" allowed, else the field message
	}{
		{"in a range", []string{"192.168.1.240-192.168.1.250"}, "192.168.1.245", ""},
		{"range ends", []string{"192.168.1.240-192.168.1.250"}, "192.168.1.250", ""},
		{"in a CIDR", []string{"10.1.2.0/30"}, "10.1.2.3", ""},
		{"outside", []string{"192.168.1.240-192.168.1.250"}, "192.168.1.1",
			`192.168.1.1 is not in the server's [lb] pools ["192.168.1.240-192.168.1.250"]`},
		{"past a CIDR", []string{"10.1.2.0/30"}, "10.1.2.4", `10.1.2.4 is not in the server's [lb] pools ["10.1.2.0/30"]`},
		{"no pools", nil, "192.168.1.245",
			"192.168.1.245: the server's node config has no [lb] pools, so no service may take an external address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := store.Open(filepath.Join(t.TempDir(), "state.db"), store.Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			s := New(st, Options{CheckExternalIP: configs.LB{Pools: tt.pools}.CheckExternalIP})
			for _, req := range []struct{ method, target, body string }{
				{"POST", "/v1/apply", `{"services":{"web":` + svc(tt.ip) + `}}`},
				{"PUT", "/v1/services/web", `{"spec":` + svc(tt.ip) + `}`},
			} {
				before := st.Rev()
				rec := serve(s, req.method, req.target, req.body)
				if tt.want == "" {
					if rec.Code != http.StatusOK && rec.Code != http.StatusCreated {
						t.Fatalf("%s %s: %d %s, want it written", req.method, req.target, rec.Code, rec.Body)
					}
					continue
				}
				var eb api.ErrorBody
				if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil {
					t.Fatal(err)
				}
				want := []api.FieldDetail{{Field: "service.web.external_ip", Message: tt.want}}
				if rec.Code != http.StatusBadRequest || !reflect.DeepEqual(eb.Error.Details, want) {
					t.Errorf("%s %s: %d %s, want 400 with %+v", req.method, req.target, rec.Code, rec.Body, want)
				}
				if st.Rev() != before {
					t.Errorf("%s %s: a refused service was written", req.method, req.target)
				}
			}
		})
	}
}
