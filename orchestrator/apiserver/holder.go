package apiserver

import (
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// HolderMinInterval is how long after a service's status.holder changed
// the server refuses (429, Retry-After) another change of it. A node may
// name only itself as the holder (authz.go), but the server cannot check
// that the gossip chose it: a stolen node could flip the holder at any
// rate, each flip a store write and a services watch event that makes
// every agent resync its load balancer. With the bound it flips at most
// once per interval, and the node the gossip chose retries (the agent
// retries a 429 every vipRetryTooMany) and is recorded within seconds.
// A real failover changes the holder once, so it is not slowed unless the
// holder changed less than the interval before.
const HolderMinInterval = 5 * time.Second

// holderGuard remembers, per service, when this server last changed its
// holder. In memory: after a restart (or on another server of an HA
// cluster) the first change is free, which only allows one more flip.
type holderGuard struct {
	now      func() time.Time
	interval time.Duration
	mu       sync.Mutex
	changed  map[string]time.Time // service name -> last change; protected by mu
}

func newHolderGuard() *holderGuard {
	return &holderGuard{now: time.Now, interval: HolderMinInterval, changed: map[string]time.Time{}}
}

// wait returns how long a change of name's holder must still wait; 0 when
// it may change now.
func (g *holderGuard) wait(name string) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	last, ok := g.changed[name]
	if !ok {
		return 0
	}
	if d := g.interval - g.now().Sub(last); d > 0 {
		return d
	}
	delete(g.changed, name) // keep the map to the services that changed lately
	return 0
}

// done records that name's holder changed now.
func (g *holderGuard) done(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.changed[name] = g.now()
}

// holderTooSoon is the 429 of a holder change within the interval.
type holderTooSoon struct {
	*apiError
	retry time.Duration
}

// putServiceHolder records which node announces a load-balancer service's
// address (status.holder). The agent that takes the address over calls it;
// the body names the address as the agent knows it, so that a report about
// an address the service no longer has is a 409 and not written. The
// service is written only when the holder changes (nodes repeat their
// report until it is stored), a node may name only itself (authz.go), and
// a holder that changed less than HolderMinInterval ago is not changed
// again yet (429 with Retry-After): the first holder of an address is
// taken at once.
func (s *Server) putServiceHolder(w http.ResponseWriter, r *http.Request) {
	var body api.ServiceHolder
	if err := s.decode(w, r, &body, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	name := r.PathValue("name")
	g := s.holders
	var svc api.Service
	changed := false
	_, err := s.st.Update(func(tx *store.Tx) error {
		if err := tx.Get(api.KindService, name, &svc); err != nil {
			return err
		}
		if svc.Status.Address == "" || svc.Status.Address != body.Address {
			return conflict("service %q has address %q, not %q", name, svc.Status.Address, body.Address)
		}
		var n api.Node
		if err := tx.Get(api.KindNode, body.Holder, &n); err != nil {
			return invalid("holder", "%q is no registered node", body.Holder)
		}
		if svc.Status.Holder == body.Holder {
			return nil
		}
		if svc.Status.Holder != "" {
			if d := g.wait(name); d > 0 {
				secs := int((d + time.Second - 1) / time.Second)
				return &holderTooSoon{tooMany("the holder of service %q changed to %q less than %s ago (holder changes are bounded to one per %s); retry in %ds",
					name, svc.Status.Holder, HolderMinInterval, HolderMinInterval, secs), d}
			}
		}
		svc.Status.Holder = body.Holder
		changed = true
		return tx.Put(api.KindService, &svc)
	})
	if err == nil && changed {
		g.done(name)
	}
	if ts := (*holderTooSoon)(nil); errors.As(err, &ts) {
		w.Header().Set("Retry-After", strconv.Itoa(int((ts.retry+time.Second-1)/time.Second)))
		s.writeError(w, r, ts.apiError)
		return
	}
	s.answer(w, r, err, http.StatusOK, &svc)
}
