package apiserver

import (
	"net/http"
	"sync"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// Leases are the nodes' liveness as their agents renew it, kept in memory
// only: a node's heartbeat costs no store write (an SD card wears out under
// a commit every few seconds). The node lifecycle controller reads them
// (controller.Config.Leases) beside the Ready condition's LastHeartbeat;
// the store is written only when a node's state changes. A restarted
// server starts with none: the controller then counts every node's time
// from its own start, and agents renew within a heartbeat.
type Leases struct {
	now func() time.Time
	// mu protects renewed.
	mu      sync.Mutex
	renewed map[string]time.Time
}

func newLeases() *Leases { return &Leases{now: time.Now, renewed: map[string]time.Time{}} }

// Renewed returns when node last renewed its lease, by this server's
// clock; the zero time if it has not since the server started.
func (l *Leases) Renewed(node string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.renewed[node]
}

func (l *Leases) renew(node string) time.Time {
	now := l.now()
	l.mu.Lock()
	l.renewed[node] = now
	l.mu.Unlock()
	return now
}

func (l *Leases) forget(node string) {
	l.mu.Lock()
	delete(l.renewed, node)
	l.mu.Unlock()
}

// overlay sets the LastHeartbeat of n's true Ready condition to its
// lease's renewal when that is later (n is a copy read for an answer,
// never written back by the server).
func (l *Leases) overlay(n *api.Node) {
	renewed := l.Renewed(n.Name)
	if renewed.IsZero() {
		return
	}
	for i := range n.Status.Conditions {
		c := &n.Status.Conditions[i]
		if c.Type == api.NodeReady && c.Status && renewed.After(c.LastHeartbeat) {
			c.LastHeartbeat = renewed.UTC()
		}
	}
}

// Leases returns the server's node leases.
func (s *Server) Leases() *Leases { return s.leases }

// renewLease renews the lease of the node of the path (a node renews only
// its own, see authz.go). A node not registered gets a 404: its agent
// registers again.
func (s *Server) renewLease(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var n api.Node
	if err := s.st.Get(api.KindNode, name, &n); err != nil {
		s.leases.forget(name)
		s.writeError(w, r, err)
		return
	}
	at := s.leases.renew(name)
	writeJSON(w, http.StatusOK, api.NodeLease{Node: name, Ready: n.Ready(), Renewed: at.UTC()})
}
