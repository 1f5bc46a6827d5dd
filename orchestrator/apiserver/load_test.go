package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
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
