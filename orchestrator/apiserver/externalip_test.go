package apiserver

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
	"github.com/skiff-edge/skiff/orchestrator/store/storetest"
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
			st := storetest.Open(t)
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

// TestLBAddressAllocation: a load-balancer service that names no address
// gets the first free one of the pools in the write that creates it; two
// services never share one; a full pool is a 409 and writes nothing; a
// deleted service's address returns to the pool; a re-apply keeps the
// address and its holder; the allocation is in the store (it survives a
// reopen, as after kill -9). An asked-for address outside the pools is a
// 400 naming "address", one held by another service a 409.
func TestLBAddressAllocation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	st, err := store.Open(path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	lb := configs.LB{Pools: []string{"192.0.2.240-192.0.2.241"}}
	opts := Options{CheckExternalIP: lb.CheckExternalIP, FreeExternalIP: lb.FreeAddress}
	s := New(st, opts)
	lbSvc := func(extra string) string {
		return `{"app":"web","port":80,"type":"load-balancer"` + extra + `}`
	}
	apply := func(name, spec string) *httptest.ResponseRecorder {
		return serve(s, "POST", "/v1/apply", `{"services":{"`+name+`":`+spec+`}}`)
	}
	addr := func(name string) api.ServiceStatus {
		t.Helper()
		var svc api.Service
		if err := st.Get(api.KindService, name, &svc); err != nil {
			t.Fatalf("get %s: %v", name, err)
		}
		return svc.Status
	}
	for _, n := range []string{"a", "b"} {
		if rec := apply(n, lbSvc("")); rec.Code != http.StatusOK {
			t.Fatalf("apply %s: %d %s", n, rec.Code, rec.Body)
		}
	}
	if a, b := addr("a").Address, addr("b").Address; a != "192.0.2.240" || b != "192.0.2.241" {
		t.Fatalf("addresses a=%q b=%q, want 192.0.2.240 and .241", a, b)
	}
	before := st.Rev()
	if rec := apply("c", lbSvc("")); rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), "service.c.address") {
		t.Fatalf("third service in a full pool: %d %s, want 409 naming service.c.address", rec.Code, rec.Body)
	}
	if st.Rev() != before {
		t.Fatal("a refused service was written")
	}
	if rec := apply("c", lbSvc(`,"address":"192.0.2.241"`)); rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), `held by service \"b\"`) {
		t.Fatalf("address held by b: %d %s, want 409", rec.Code, rec.Body)
	}
	rec := apply("c", lbSvc(`,"address":"192.0.2.9"`))
	var eb api.ErrorBody
	_ = json.Unmarshal(rec.Body.Bytes(), &eb)
	if rec.Code != http.StatusBadRequest || len(eb.Error.Details) != 1 || eb.Error.Details[0].Field != "service.c.address" {
		t.Fatalf("address outside the pools: %d %s, want 400 on service.c.address", rec.Code, rec.Body)
	}

	// The holder: only for the address the service has, only a
	// registered node, written only on change.
	if _, err := st.Update(func(tx *store.Tx) error {
		return tx.Create(api.KindNode, &api.Node{Meta: api.Meta{Name: "n1"}})
	}); err != nil {
		t.Fatal(err)
	}
	if rec := serve(s, "PUT", "/v1/services/a/holder", `{"address":"192.0.2.241","holder":"n1"}`); rec.Code != http.StatusConflict {
		t.Fatalf("holder of another address: %d %s, want 409", rec.Code, rec.Body)
	}
	if rec := serve(s, "PUT", "/v1/services/a/holder", `{"address":"192.0.2.240","holder":"nobody"}`); rec.Code != http.StatusBadRequest {
		t.Fatalf("unregistered holder: %d %s, want 400", rec.Code, rec.Body)
	}
	if rec := serve(s, "PUT", "/v1/services/a/holder", `{"address":"192.0.2.240","holder":"n1"}`); rec.Code != http.StatusOK {
		t.Fatalf("holder: %d %s", rec.Code, rec.Body)
	}
	before = st.Rev()
	if rec := serve(s, "PUT", "/v1/services/a/holder", `{"address":"192.0.2.240","holder":"n1"}`); rec.Code != http.StatusOK || st.Rev() != before {
		t.Fatalf("same holder again: %d, revision %d -> %d; want 200 and no write", rec.Code, before, st.Rev())
	}
	if rec := apply("a", lbSvc(`,"port":81`)); rec.Code != http.StatusOK {
		t.Fatalf("re-apply a: %d %s", rec.Code, rec.Body)
	}
	if got := addr("a"); got.Address != "192.0.2.240" || got.Holder != "n1" {
		t.Fatalf("after re-apply a has %+v, want its address and holder kept", got)
	}

	// Delete b: its address returns to the pool.
	if rec := serve(s, "DELETE", "/v1/services/b", ""); rec.Code != http.StatusOK {
		t.Fatalf("delete b: %d %s", rec.Code, rec.Body)
	}
	if rec := apply("c", lbSvc("")); rec.Code != http.StatusOK || addr("c").Address != "192.0.2.241" {
		t.Fatalf("c after b's delete: %d %s, address %q; want b's 192.0.2.241", rec.Code, rec.Body, addr("c").Address)
	}

	// The allocation is in the store: a reopened store has it.
	st.Close()
	st, err = store.Open(path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if a, c := addr("a").Address, addr("c").Address; a != "192.0.2.240" || c != "192.0.2.241" {
		t.Fatalf("after reopen a=%q c=%q", a, c)
	}
	// Changing the type away from load-balancer frees the address.
	s = New(st, opts)
	if rec := apply("a", `{"app":"web","port":80}`); rec.Code != http.StatusOK || addr("a").Address != "" {
		t.Fatalf("a as cluster service: %d %s, address %q", rec.Code, rec.Body, addr("a").Address)
	}
}

// TestApplyAskedAddressFirst: in one manifest, a service that asks for
// the pool's first address keeps it although another service, earlier by
// name, lets the server pick (it gets the next one).
func TestApplyAskedAddressFirst(t *testing.T) {
	s, st := lbTestServer(t)
	rec := serve(s, "POST", "/v1/apply", `{"services":{
		"auto":{"app":"web","port":81,"type":"load-balancer"},
		"shop":{"app":"web","port":80,"type":"load-balancer","address":"192.0.2.240"}}}`)
	if rec.Code != http.StatusOK {
		t.Fatalf("apply: %d %s", rec.Code, rec.Body)
	}
	if !strings.Contains(rec.Body.String(), `"name":"auto"`) || strings.Index(rec.Body.String(), `"name":"auto"`) > strings.Index(rec.Body.String(), `"name":"shop"`) {
		t.Errorf("results not in name order: %s", rec.Body)
	}
	for name, want := range map[string]string{"shop": "192.0.2.240", "auto": "192.0.2.241"} {
		var svc api.Service
		if err := st.Get(api.KindService, name, &svc); err != nil {
			t.Fatal(err)
		}
		if svc.Status.Address != want {
			t.Errorf("%s got address %q, want %s", name, svc.Status.Address, want)
		}
	}
}
