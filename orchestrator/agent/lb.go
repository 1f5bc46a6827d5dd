package agent

import (
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/skiff-edge/skiff/netlb"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
	"github.com/skiff-edge/skiff/orchestrator/metrics"
)

// lbNetwork programs the node's load balancer from the whole desired set
// in one step. Satisfied by *netlb.Network.
type lbNetwork interface {
	Sync(services []netlb.Service, endpoints map[string][]netlb.Endpoint) error
}

// serviceAPI lists the cluster's services and endpoints. Satisfied by
// *client.Client.
type serviceAPI interface {
	ListServices(ctx context.Context) (api.List[api.Service], error)
	ListEndpoints(ctx context.Context) (api.List[api.Endpoints], error)
}

var (
	_ lbNetwork  = (*netlb.Network)(nil)
	_ serviceAPI = (*client.Client)(nil)
)

// lbMinInterval spaces netlb syncs so that a burst of changes makes one.
const lbMinInterval = 20 * time.Millisecond

// lb is the load-balancer side of the agent: it keeps every service and
// endpoints object of the cluster (from a list, the watches, or the local
// cache) and programs the node's netlb from them, coalescing bursts and
// retrying failed syncs.
type lb struct {
	log     *slog.Logger
	api     serviceAPI
	watcher watcher
	// net is set by Agent.Run before the first sync.
	net lbNetwork
	// names, if set (by Agent.Run, before syncLoop starts), is the node's
	// resolver: every sync hands it the services and endpoints too.
	names *resolver
	// metrics records sync durations (nil: none).
	metrics *metrics.Agent

	kickc chan struct{}
	// onChange, if set, is called after every change of the services or
	// endpoints held and every resync tick (the VIP loop's kick); it must
	// not block.
	onChange func()

	// mu protects the fields below.
	mu       sync.Mutex
	services map[string]*api.Service
	eps      map[string]*api.Endpoints
	// ips are the endpoint IPs of the last successful netlb sync.
	ips map[string]bool
	// down are nodes the gossip says failed (setDown): their endpoints are
	// left out of this node's load balancer.
	down map[string]bool
	// activator is the activator's port (0: none), where services that
	// scale to zero send new connections while they have no endpoints.
	activator int
}

func newLB(log *slog.Logger, c serviceAPI, w watcher) *lb {
	return &lb{
		log: log, api: c, watcher: w,
		kickc:    make(chan struct{}, 1),
		services: map[string]*api.Service{},
		eps:      map[string]*api.Endpoints{},
		ips:      map[string]bool{},
	}
}

// kick asks the sync loop for a sync; it never blocks.
func (l *lb) kick() {
	select {
	case l.kickc <- struct{}{}:
	default:
	}
}

// syncLoop syncs netlb whenever kicked, coalescing bursts, and retries a
// failed sync. It calls tick after every sync, failed or not: run kicks it
// every resync, so a loop that stops ticking is stuck (or run is).
func (l *lb) syncLoop(ctx context.Context, tick func()) {
	var retry <-chan time.Time
	for {
		tick()
		select {
		case <-ctx.Done():
			return
		case <-l.kickc:
		case <-retry:
		}
		retry = nil
		if err := l.sync(); err != nil {
			l.log.Warn("load balancer sync failed; retrying", "err", err)
			retry = time.After(time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(lbMinInterval):
		}
	}
}

// sync programs netlb from the services and endpoints held.
func (l *lb) sync() error {
	l.mu.Lock()
	up := withoutDown(l.eps, l.down)
	svcs, eps, ips := lbState(l.services, up)
	if l.names != nil {
		l.names.setView(valuesOf(l.services), up)
	}
	if l.activator != 0 {
		for i := range svcs {
			if e := l.eps[svcs[i].Name]; e != nil && e.Activate {
				svcs[i].Activator = l.activator
			}
		}
	}
	l.mu.Unlock()
	start := time.Now()
	if err := l.net.Sync(svcs, eps); err != nil {
		return err
	}
	l.metrics.LBSynced(time.Since(start).Seconds())
	l.mu.Lock()
	l.ips = ips
	l.mu.Unlock()
	return nil
}

// setDown says which nodes the gossip reports failed; see
// Agent.SetDownNodes. Safe to call at any time.
func (l *lb) setDown(nodes map[string]bool) {
	l.mu.Lock()
	changed := !maps.Equal(l.down, nodes)
	l.down = maps.Clone(nodes)
	l.mu.Unlock()
	if changed {
		l.kick()
	}
}

// inLB reports whether ip is still an endpoint in the endpoints held or in
// the rules of the last netlb sync.
func (l *lb) inLB(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ips[ip] {
		return true
	}
	for _, e := range l.eps {
		for _, ep := range e.Endpoints {
			if ep.IP == ip {
				return true
			}
		}
	}
	return false
}

func (l *lb) changed() {
	if l.onChange != nil {
		l.onChange()
	}
}

// vipView returns the services and endpoints held, in maps of their own
// (the objects are shared: they are replaced, never changed).
func (l *lb) vipView() (map[string]*api.Service, map[string]*api.Endpoints) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.services), maps.Clone(l.eps)
}

// set replaces the services and endpoints held (from the local cache).
func (l *lb) set(services []*api.Service, eps []*api.Endpoints) {
	defer l.changed()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.services = map[string]*api.Service{}
	for _, s := range services {
		l.services[s.Name] = s
	}
	l.eps = map[string]*api.Endpoints{}
	for _, e := range eps {
		l.eps[e.Name] = e
	}
}

// snapshot returns the services and endpoints held, for the local cache.
func (l *lb) snapshot() ([]*api.Service, []*api.Endpoints) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return valuesOf(l.services), valuesOf(l.eps)
}

func valuesOf[V any](m map[string]V) []V {
	var out []V
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// relist replaces the services and endpoints held by fresh lists (retried
// until ctx ends) and returns the lists' revisions, where the watches
// start.
func (l *lb) relist(ctx context.Context) (svcRev, epRev int64, err error) {
	svcs, err := retry(ctx, func() (api.List[api.Service], error) { return l.api.ListServices(ctx) })
	if err != nil {
		return 0, 0, err
	}
	eps, err := retry(ctx, func() (api.List[api.Endpoints], error) { return l.api.ListEndpoints(ctx) })
	if err != nil {
		return 0, 0, err
	}
	defer l.changed()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.services = map[string]*api.Service{}
	for i := range svcs.Items {
		l.services[svcs.Items[i].Name] = &svcs.Items[i]
	}
	l.eps = map[string]*api.Endpoints{}
	for i := range eps.Items {
		l.eps[eps.Items[i].Name] = &eps.Items[i]
	}
	return svcs.Revision, eps.Revision, nil
}

// run watches services and endpoints from the given revisions and applies
// their events until ctx ends; every change, and every resync tick, kicks
// a sync (syncLoop must run).
func (l *lb) run(ctx context.Context, svcRev, epRev int64, resync time.Duration) {
	items := make(chan watchItem, 64)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(2)
	go func() {
		defer wg.Done()
		watch(ctx, l.log, l.watcher, api.KindService, svcRev, nil, l.listServices, items)
	}()
	go func() {
		defer wg.Done()
		watch(ctx, l.log, l.watcher, api.KindEndpoints, epRev, nil, l.listEndpoints, items)
	}()
	t := time.NewTicker(resync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case it := <-items:
			l.apply(it)
			l.kick()
			l.changed()
		case <-t.C:
			l.kick()
			l.changed()
		}
	}
}

func (l *lb) listServices(ctx context.Context) ([]json.RawMessage, int64, error) {
	s, err := l.api.ListServices(ctx)
	return rawItems(s.Items), s.Revision, err
}

func (l *lb) listEndpoints(ctx context.Context) ([]json.RawMessage, int64, error) {
	e, err := l.api.ListEndpoints(ctx)
	return rawItems(e.Items), e.Revision, err
}

// apply applies one service or endpoints watch item.
func (l *lb) apply(it watchItem) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if it.relist == nil {
		l.putLocked(it.kind, it.ev.Object, it.ev.Type == api.EventDelete)
		return
	}
	if it.kind == api.KindService {
		l.services = map[string]*api.Service{}
	} else {
		l.eps = map[string]*api.Endpoints{}
	}
	for _, raw := range it.relist {
		l.putLocked(it.kind, raw, false)
	}
}

// putLocked stores (or deletes) a service or endpoints object; l.mu is
// held.
func (l *lb) putLocked(kind string, raw json.RawMessage, deleted bool) {
	if kind == api.KindService {
		var s api.Service
		if json.Unmarshal(raw, &s) != nil {
			return
		}
		if deleted {
			delete(l.services, s.Name)
		} else {
			l.services[s.Name] = &s
		}
		return
	}
	var e api.Endpoints
	if json.Unmarshal(raw, &e) != nil {
		return
	}
	if deleted {
		delete(l.eps, e.Name)
	} else {
		l.eps[e.Name] = &e
	}
}
