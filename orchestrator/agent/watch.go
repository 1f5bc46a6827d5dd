package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"sync"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

// watchItem is one watch event, or (relist set) the full list of a kind
// after a 410.
type watchItem struct {
	kind   string
	ev     api.WatchEvent
	relist []json.RawMessage
}

// watch streams kind's events into out from since on, resuming from the
// last revision seen after a closed stream and relisting after a 410.
func (a *Agent) watch(ctx context.Context, kind string, since int64, q url.Values, out chan<- watchItem) {
	delay := 100 * time.Millisecond
	for ctx.Err() == nil {
		evs, errc := a.c.WatchQuery(ctx, kind, since, q)
		got := false
		for ev := range evs {
			got = true
			since = ev.Revision
			select {
			case out <- watchItem{kind: kind, ev: ev}:
			case <-ctx.Done():
				return
			}
		}
		err := <-errc
		if ctx.Err() != nil {
			return
		}
		if client.IsGone(err) {
			a.log.Info("watch compacted past our revision; listing again", "kind", kind)
			items, rev, lerr := a.listRaw(ctx, kind)
			if lerr == nil {
				since = rev
				select {
				case out <- watchItem{kind: kind, relist: items}:
				case <-ctx.Done():
					return
				}
				continue
			}
			err = lerr
		}
		if got {
			delay = 100 * time.Millisecond
		}
		if !errors.Is(err, client.ErrWatchClosed) {
			a.log.Debug("watch ended", "kind", kind, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}

// listRaw lists kind (pods: this node's) as raw objects.
func (a *Agent) listRaw(ctx context.Context, kind string) ([]json.RawMessage, int64, error) {
	var items []json.RawMessage
	var rev int64
	add := func(v any) {
		b, _ := json.Marshal(v)
		items = append(items, b)
	}
	switch kind {
	case api.KindPod:
		l, err := a.c.ListPods(ctx, "", a.name)
		if err != nil {
			return nil, 0, err
		}
		for i := range l.Items {
			add(&l.Items[i])
		}
		rev = l.Revision
	case api.KindService:
		l, err := a.c.ListServices(ctx)
		if err != nil {
			return nil, 0, err
		}
		for i := range l.Items {
			add(&l.Items[i])
		}
		rev = l.Revision
	case api.KindEndpoints:
		l, err := a.c.ListEndpoints(ctx)
		if err != nil {
			return nil, 0, err
		}
		for i := range l.Items {
			add(&l.Items[i])
		}
		rev = l.Revision
	}
	return items, rev, nil
}

// relistServices fills the service and endpoints caches from fresh lists
// and returns the lists' revisions.
func (a *Agent) relistServices(ctx context.Context) (svcRev, epRev int64, err error) {
	svcs, err := retry(ctx, func() (api.List[api.Service], error) { return a.c.ListServices(ctx) })
	if err != nil {
		return 0, 0, err
	}
	eps, err := retry(ctx, func() (api.List[api.Endpoints], error) { return a.c.ListEndpoints(ctx) })
	if err != nil {
		return 0, 0, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.services = map[string]*api.Service{}
	for i := range svcs.Items {
		a.services[svcs.Items[i].Name] = &svcs.Items[i]
	}
	a.eps = map[string]*api.Endpoints{}
	for i := range eps.Items {
		a.eps[eps.Items[i].Name] = &eps.Items[i]
	}
	return svcs.Revision, eps.Revision, nil
}

// handle applies one watch item to the caches and the workers.
func (a *Agent) handle(ctx context.Context, wg *sync.WaitGroup, it watchItem) {
	switch it.kind {
	case api.KindService, api.KindEndpoints:
		a.mu.Lock()
		if it.relist != nil {
			if it.kind == api.KindService {
				a.services = map[string]*api.Service{}
			} else {
				a.eps = map[string]*api.Endpoints{}
			}
			for _, raw := range it.relist {
				a.putServiceObj(it.kind, raw, false)
			}
		} else {
			a.putServiceObj(it.kind, it.ev.Object, it.ev.Type == api.EventDelete)
		}
		a.mu.Unlock()
		a.kickLB()
	case api.KindPod:
		if it.relist != nil {
			seen := map[string]bool{}
			for _, raw := range it.relist {
				var p api.Pod
				if json.Unmarshal(raw, &p) == nil {
					seen[p.Name] = true
					a.podChanged(ctx, wg, &p, false)
				}
			}
			a.mu.Lock()
			var gone []*podWorker
			for name, w := range a.workers {
				if !seen[name] {
					gone = append(gone, w)
				}
			}
			a.mu.Unlock()
			for _, w := range gone {
				w.update(nil)
			}
			return
		}
		var p api.Pod
		if err := json.Unmarshal(it.ev.Object, &p); err != nil {
			a.log.Warn("bad pod in watch", "err", err)
			return
		}
		a.podChanged(ctx, wg, &p, it.ev.Type == api.EventDelete || p.Spec.Node != a.name)
	}
}

// putServiceObj stores a service or endpoints object; a.mu is held.
func (a *Agent) putServiceObj(kind string, raw json.RawMessage, deleted bool) {
	if kind == api.KindService {
		var s api.Service
		if json.Unmarshal(raw, &s) != nil {
			return
		}
		if deleted {
			delete(a.services, s.Name)
		} else {
			a.services[s.Name] = &s
		}
		return
	}
	var e api.Endpoints
	if json.Unmarshal(raw, &e) != nil {
		return
	}
	if deleted {
		delete(a.eps, e.Name)
	} else {
		a.eps[e.Name] = &e
	}
}

// podChanged hands a pod's new object (gone: its object was deleted) to
// its worker, starting one for a new pod; it returns the worker it
// started, if any.
func (a *Agent) podChanged(ctx context.Context, wg *sync.WaitGroup, p *api.Pod, gone bool) *podWorker {
	a.mu.Lock()
	w := a.workers[p.Name]
	a.mu.Unlock()
	switch {
	case w != nil && gone:
		w.update(nil)
	case w != nil:
		w.update(p)
	case !gone:
		return a.startWorker(ctx, wg, p.Name, p)
	}
	return nil
}
