package apiserver

import (
	"context"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// fakeMembership models a two-node gossip: a server and an agent.
type fakeMembership struct{}

func (fakeMembership) Members() []api.Member {
	return []api.Member{
		{Name: "s1", Addr: "10.0.0.1:7946", Status: "alive", Role: "server", API: "10.0.0.1:7443", IP: "10.0.0.1"},
		{Name: "a1", Addr: "10.0.0.2:7946", Status: "failed", Role: "agent", IP: "10.0.0.2", PodCIDR: "10.88.1.0/24"},
	}
}

func (fakeMembership) ClusterInfo() api.ClusterInfo {
	return api.ClusterInfo{Gossip: []string{"10.0.0.1:7946"}, Servers: []string{"10.0.0.1:7443"}}
}

var _ Membership = fakeMembership{}

// TestMembers: /v1/members and /v1/cluster answer 503 until a membership
// is set, then its view; they are GET only and, on TCP, need credentials
// like every other route.
func TestMembers(t *testing.T) {
	e := newTLSEnv(t, time.Hour)
	s, hs := e.s, e.srv
	secret := e.token("read", "")
	c := e.client(secret)
	ctx := context.Background()

	if _, err := c.Members(ctx); !isStatus(err, http.StatusServiceUnavailable) || !strings.Contains(err.Error(), "--listen-tcp") {
		t.Errorf("members without gossip: %v, want 503 with advice", err)
	}
	if _, err := c.Cluster(ctx); !isStatus(err, http.StatusServiceUnavailable) {
		t.Errorf("cluster without gossip: %v, want 503", err)
	}

	s.SetMembership(fakeMembership{})
	ms, err := c.Members(ctx)
	if err != nil || !reflect.DeepEqual(ms, fakeMembership{}.Members()) {
		t.Errorf("members: %+v %v", ms, err)
	}
	ci, err := c.Cluster(ctx)
	if err != nil || !reflect.DeepEqual(ci, fakeMembership{}.ClusterInfo()) {
		t.Errorf("cluster: %+v %v", ci, err)
	}
	if rec := serve(s, "GET", "/v1/members", ""); !strings.HasPrefix(rec.Body.String(), `{"items":[{"name":"s1","addr":"10.0.0.1:7946","status":"alive","role":"server","api":"10.0.0.1:7443"`) {
		t.Errorf("members JSON: %s", rec.Body)
	}

	tests := []struct {
		name, method, path, token string
		status                    int
	}{
		{"members without token", "GET", "/v1/members", "", http.StatusUnauthorized},
		{"cluster without token", "GET", "/v1/cluster", "", http.StatusUnauthorized},
		{"members POST", "POST", "/v1/members", secret, http.StatusMethodNotAllowed},
		{"cluster DELETE", "DELETE", "/v1/cluster", secret, http.StatusMethodNotAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, hs.URL+tc.path, nil)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := e.tlsClient(nil).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}

	s.SetMembership(nil)
	if _, err := c.Members(ctx); !isStatus(err, http.StatusServiceUnavailable) {
		t.Errorf("members after SetMembership(nil): %v, want 503", err)
	}
}
