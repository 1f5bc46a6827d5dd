package apiserver

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
	"github.com/skiff-edge/skiff/orchestrator/store/storetest"
)

func newTestServer(t testing.TB, serviceCIDR string) (*Server, *store.Store) {
	t.Helper()
	st := storetest.Open(t)
	opts := Options{ServiceCIDR: serviceCIDR, ClusterCIDR: "10.88.0.0/22"}
	if err := opts.Validate(); err != nil {
		t.Fatal(err)
	}
	return New(st, opts), st
}

// putSvc writes a service through the same path as PUT and apply.
func putSvc(s *Server, st *store.Store, name string, spec configs.ServiceSpec) (api.Service, error) {
	spec.SetDefaults()
	var out api.Service
	_, err := st.Update(func(tx *store.Tx) error {
		_, err := s.writeService(tx, name, &spec, 0, &out)
		return err
	})
	return out, err
}

func status(err error) int {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.status
	}
	return 0
}

func TestAllocateService(t *testing.T) {
	// A /29 has six host addresses: .1 to .6.
	s, st := newTestServer(t, "10.96.0.0/29")
	np := configs.ServiceSpec{App: "a", Port: 80, Type: configs.ServiceNodePort}
	steps := []struct {
		name     string
		svc      string
		spec     configs.ServiceSpec
		wantIP   string
		wantPort int
		wantCode int
	}{
		{"first gets the lowest", "a", configs.ServiceSpec{App: "a", Port: 80}, "10.96.0.1", 0, 0},
		{"node port gets one", "b", np, "10.96.0.2", 30000, 0},
		{"re-apply keeps both", "b", np, "10.96.0.2", 30000, 0},
		{"fixed ip", "c", configs.ServiceSpec{App: "a", Port: 80, ClusterIP: "10.96.0.5"}, "10.96.0.5", 0, 0},
		{"fixed ip held", "d", configs.ServiceSpec{App: "a", Port: 80, ClusterIP: "10.96.0.5"}, "", 0, http.StatusConflict},
		{"fixed ip outside", "d", configs.ServiceSpec{App: "a", Port: 80, ClusterIP: "10.97.0.5"}, "", 0, http.StatusBadRequest},
		{"network address", "d", configs.ServiceSpec{App: "a", Port: 80, ClusterIP: "10.96.0.0"}, "", 0, http.StatusBadRequest},
		{"broadcast address", "d", configs.ServiceSpec{App: "a", Port: 80, ClusterIP: "10.96.0.7"}, "", 0, http.StatusBadRequest},
		{"node port held", "d", configs.ServiceSpec{App: "a", Port: 80, Type: configs.ServiceNodePort, NodePort: 30000}, "", 0, http.StatusConflict},
		{"next free skips the fixed one", "d", configs.ServiceSpec{App: "a", Port: 80}, "10.96.0.3", 0, 0},
		{"e", "e", configs.ServiceSpec{App: "a", Port: 80}, "10.96.0.4", 0, 0},
		{"f", "f", configs.ServiceSpec{App: "a", Port: 80}, "10.96.0.6", 0, 0},
		{"pool exhausted", "g", configs.ServiceSpec{App: "a", Port: 80}, "", 0, http.StatusConflict},
		{"type change drops the node port", "b", configs.ServiceSpec{App: "a", Port: 80}, "10.96.0.2", 0, 0},
	}
	for _, tc := range steps {
		t.Run(tc.name, func(t *testing.T) {
			svc, err := putSvc(s, st, tc.svc, tc.spec)
			if got := status(err); got != tc.wantCode || (tc.wantCode == 0 && err != nil) {
				t.Fatalf("err %v (status %d), want status %d", err, got, tc.wantCode)
			}
			if err != nil {
				if st.Get(api.KindService, tc.svc, &api.Service{}) == nil && tc.svc == "g" {
					t.Fatal("failed write stored the service")
				}
				return
			}
			if svc.Status.ClusterIP != tc.wantIP || svc.Status.NodePort != tc.wantPort {
				t.Fatalf("got %+v, want %s:%d", svc.Status, tc.wantIP, tc.wantPort)
			}
		})
	}
}

func TestAllocatePodCIDR(t *testing.T) {
	s, st := newTestServer(t, "")
	// A /22 holds four /24s.
	for i := 0; i < 5; i++ {
		name := fmt.Sprintf("n%d", i)
		var got api.Node
		_, err := st.Update(func(tx *store.Tx) error {
			got = api.Node{Meta: api.Meta{Name: name}}
			if err := s.allocatePodCIDR(tx, &got, nil); err != nil {
				return err
			}
			return tx.Put(api.KindNode, &got)
		})
		if i == 4 {
			if status(err) != http.StatusConflict {
				t.Fatalf("fifth node: %v, want a conflict", err)
			}
			continue
		}
		if want := fmt.Sprintf("10.88.%d.0/24", i); err != nil || got.Spec.PodCIDR != want {
			t.Fatalf("node %s: %q %v, want %s", name, got.Spec.PodCIDR, err, want)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		ok   bool
	}{
		{"defaults", Options{}, true},
		{"set", Options{ServiceCIDR: "10.1.0.0/24", ClusterCIDR: "10.2.0.0/16"}, true},
		{"service not a cidr", Options{ServiceCIDR: "10.1.0.0"}, false},
		{"service ipv6", Options{ServiceCIDR: "fd00::/64"}, false},
		{"cluster smaller than a /24", Options{ClusterCIDR: "10.2.0.0/25"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.opts.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
