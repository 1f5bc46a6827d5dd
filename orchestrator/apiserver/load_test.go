package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// TestNodeLoadOwnPodsOnly: a node's report counts the CPU of its own pods
// only, and rates of services that exist only; readers see the sums.
func TestNodeLoadOwnPodsOnly(t *testing.T) {
	e := newTLSEnv(t, time.Hour)
	holders := seedAuthz(t, e)
	body, _ := json.Marshal(&api.NodeLoad{Interval: 2,
		Services: []api.ServiceLoad{{Service: "web", NewPerSec: 40, Active: 2}, {Service: "ghost", NewPerSec: 1000}},
		Pods:     []api.PodLoad{{Pod: "web-a", CPU: 5}, {Pod: "web-b", CPU: 0.25}},
	})
	req, _ := http.NewRequest("PUT", e.srv.URL+"/v1/nodes/edge-02/load", bytes.NewReader(body))
	resp, err := e.tlsClient(holders["edge-02"]).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT load: %s", resp.Status)
	}
	reg := e.s.Load()
	if got := reg.App("web", []string{"web", "ghost"}); got.CPU != 0.25 || got.RPS != 40 || got.Pods != 1 {
		t.Errorf("app load %+v: want web-b's CPU only (web-a is on edge-01) and no rate of a service that does not exist", got)
	}
	admin := e.client(e.token(api.RoleAdmin, ""))
	st, err := admin.ServiceStats(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	if st.NewPerSec != 40 || st.Nodes != 1 || st.App != "web" {
		t.Errorf("GET /v1/services/web/stats: %+v", st)
	}
}

// TestScaleAutoscaledApp: skiff scale on an autoscaled app is refused with
// a message that says how to change its count; an apply with another
// replicas keeps the autoscaler's state.
func TestScaleAutoscaledApp(t *testing.T) {
	s, st := newTestServer(t, "10.96.0.0/24")
	app := &api.App{Meta: api.Meta{Name: "web"}, Spec: configs.AppSpec{Replicas: intPtr(2),
		Autoscale:  &configs.AutoscaleSpec{Min: 1, Max: 8, TargetRPS: 100},
		Containers: map[string]*configs.ContainerSpec{"http": {Image: "echo"}}},
		Status: api.AppStatus{Autoscale: &api.AutoscaleStatus{Desired: 5}}}
	if _, err := st.Update(func(tx *store.Tx) error { return tx.Put(api.KindApp, app) }); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/v1/apps/web/scale", strings.NewReader(`{"replicas":3}`))
	s.ServeHTTP(rec, req.WithContext(withIdentity(req.Context(), Identity{Local: true})))
	if rec.Code != 400 || !strings.Contains(rec.Body.String(), `app \"web\" is autoscaled between 1 and 8 replicas: change min and max in [app.web.autoscale]`) {
		t.Errorf("scale of an autoscaled app: %d %s", rec.Code, rec.Body)
	}
	// An apply of the manifest with replicas 1 keeps the status.
	m := &configs.Manifest{Apps: map[string]*configs.AppSpec{"web": {Replicas: intPtr(1),
		Autoscale:  &configs.AutoscaleSpec{Min: 1, Max: 8, TargetRPS: 100},
		Containers: map[string]*configs.ContainerSpec{"http": {Image: "echo"}}}}}
	body, _ := json.Marshal(m)
	rec = httptest.NewRecorder()
	req = httptest.NewRequest("POST", "/v1/apply", bytes.NewReader(body))
	s.ServeHTTP(rec, req.WithContext(withIdentity(req.Context(), Identity{Local: true})))
	if rec.Code != 200 {
		t.Fatalf("apply: %d %s", rec.Code, rec.Body)
	}
	var got api.App
	if err := st.Get(api.KindApp, "web", &got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Autoscale == nil || got.Status.Autoscale.Desired != 5 {
		t.Errorf("after apply: autoscale status %+v, want desired 5 kept", got.Status.Autoscale)
	}
}

func intPtr(n int) *int { return &n }

// TestWakeService: a wake sets an app that scaled to zero to one replica,
// once, with an event; it never touches an app at more than zero.
func TestWakeService(t *testing.T) {
	s, st := newTestServer(t, "10.96.0.0/24")
	app := &api.App{Meta: api.Meta{Name: "web"}, Spec: configs.AppSpec{Replicas: intPtr(1),
		Autoscale:  &configs.AutoscaleSpec{Min: 0, Max: 4, TargetRPS: 100},
		Containers: map[string]*configs.ContainerSpec{"http": {Image: "echo"}}},
		Status: api.AppStatus{Autoscale: &api.AutoscaleStatus{Desired: 0, LastDirection: -1}}}
	if _, err := st.Update(func(tx *store.Tx) error { return tx.Put(api.KindApp, app) }); err != nil {
		t.Fatal(err)
	}
	if _, err := putSvc(s, st, "web", configs.ServiceSpec{App: "web", Port: 80}); err != nil {
		t.Fatal(err)
	}
	wake := func() string {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/v1/services/web/wake", strings.NewReader(`{}`))
		s.ServeHTTP(rec, req.WithContext(withIdentity(req.Context(), Identity{Local: true})))
		if rec.Code != 200 {
			t.Fatalf("wake: %d %s", rec.Code, rec.Body)
		}
		return rec.Body.String()
	}
	if got := wake(); !strings.Contains(got, `"woken":true`) {
		t.Errorf("first wake: %s", got)
	}
	if got := wake(); !strings.Contains(got, `"woken":false`) {
		t.Errorf("second wake: %s, want not woken (at 1 already)", got)
	}
	var a api.App
	if err := st.Get(api.KindApp, "web", &a); err != nil {
		t.Fatal(err)
	}
	if as := a.Status.Autoscale; as.Desired != 1 || len(as.Reversals) != 1 || len(as.Decisions) != 1 {
		t.Errorf("after wakes: %+v", as)
	}
}

// TestNodeLoadBounds: a report cannot list a service or pod twice (the sums
// would count it twice) nor give connection counts whose sum wraps to a
// negative number (which would hide other nodes' connections from the
// autoscaler); each is a 400 naming the field, and nothing is kept.
func TestNodeLoadBounds(t *testing.T) {
	s, _ := newTestServer(t, "10.96.0.0/24")
	const huge = 1 << 62
	for _, tt := range []struct {
		body  api.NodeLoad
		field string
	}{
		{api.NodeLoad{Interval: 2, Services: []api.ServiceLoad{{Service: "web", Active: 1}, {Service: "web", Active: 1}}}, "services[1].service"},
		{api.NodeLoad{Interval: 2, Services: []api.ServiceLoad{{Service: "web", Active: huge}}}, "services[0].active"},
		{api.NodeLoad{Interval: 2, Services: []api.ServiceLoad{{Service: "web", Endpoints: []api.EndpointLoad{{IP: "10.0.0.1", Port: 80, Active: huge}}}}}, "services[0].endpoints[0]"},
		{api.NodeLoad{Interval: 2, Pods: []api.PodLoad{{Pod: "web-a", CPU: 1}, {Pod: "web-a", CPU: 1}}}, "pods[1].pod"},
	} {
		body, _ := json.Marshal(&tt.body)
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("PUT", "/v1/nodes/n1/load", bytes.NewReader(body))
		s.ServeHTTP(rec, req.WithContext(withIdentity(req.Context(), Identity{Local: true})))
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), tt.field) {
			t.Errorf("report %s: %d %s, want 400 naming %s", body, rec.Code, rec.Body, tt.field)
		}
	}
	if n := s.Load().Reporting(); n != 0 {
		t.Errorf("%d nodes' reports kept, want none", n)
	}
}

// TestNodeLoadFollowsStore: the pods and services a report is checked
// against are read again once the store changed (they are kept by store
// revision between reports): a pod bound to the node and a service made
// after a first report count in the next one.
func TestNodeLoadFollowsStore(t *testing.T) {
	s, st := newTestServer(t, "10.96.0.0/24")
	report := func() {
		t.Helper()
		body, _ := json.Marshal(&api.NodeLoad{Interval: 2,
			Services: []api.ServiceLoad{{Service: "web", NewPerSec: 40}},
			Pods:     []api.PodLoad{{Pod: "web-a", CPU: 0.5}},
		})
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("PUT", "/v1/nodes/n1/load", bytes.NewReader(body))
		s.ServeHTTP(rec, req.WithContext(withIdentity(req.Context(), Identity{Local: true})))
		if rec.Code != http.StatusNoContent {
			t.Fatalf("PUT load: %d %s", rec.Code, rec.Body)
		}
	}
	report()
	if got := s.Load().App("web", []string{"web"}); got.CPU != 0 || got.RPS != 0 {
		t.Errorf("before the pod and service exist: %+v, want nothing counted", got)
	}
	pod := &api.Pod{Meta: api.Meta{Name: "web-a"}, Spec: api.PodSpec{App: "web", Node: "n1"}}
	if _, err := st.Update(func(tx *store.Tx) error { return tx.Put(api.KindPod, pod) }); err != nil {
		t.Fatal(err)
	}
	if _, err := putSvc(s, st, "web", configs.ServiceSpec{App: "web", Port: 80}); err != nil {
		t.Fatal(err)
	}
	report()
	if got := s.Load().App("web", []string{"web"}); got.CPU != 0.5 || got.RPS != 40 {
		t.Errorf("after: %+v, want the pod's CPU and the service's rate", got)
	}
}
