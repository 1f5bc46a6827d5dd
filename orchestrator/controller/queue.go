package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// work is what a pass looks at.
type work struct {
	// all: every app, service and pending pod (a resync, a node change).
	all bool
	// apps to reconcile; their services' endpoints too.
	apps map[string]bool
	// services whose endpoints to recompute.
	services map[string]bool
	// schedule: some pod may wait for a node.
	schedule bool
}

func (w *work) empty() bool {
	return !w.all && !w.schedule && len(w.apps) == 0 && len(w.services) == 0
}

// queue collects work between passes. Marking is cheap and never blocks;
// ready has a token whenever there is work.
type queue struct {
	// mu protects w and nodeSig.
	mu sync.Mutex
	w  work
	// nodeSig is the last seen scheduling-relevant part of each node, so
	// that a heartbeat alone does not mark everything.
	nodeSig map[string]string
	ready   chan struct{}
}

func newQueue() *queue {
	return &queue{
		w:       work{apps: map[string]bool{}, services: map[string]bool{}},
		nodeSig: map[string]string{},
		ready:   make(chan struct{}, 1),
	}
}

func (q *queue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

func (q *queue) markAll() {
	q.mu.Lock()
	q.w.all = true
	q.mu.Unlock()
	q.signal()
}

// markApp queues a pass over app name.
func (q *queue) markApp(name string) {
	q.mu.Lock()
	q.w.apps[name] = true
	q.mu.Unlock()
	q.signal()
}

// take returns the queued work and empties the queue.
func (q *queue) take() work {
	q.mu.Lock()
	defer q.mu.Unlock()
	w := q.w
	q.w = work{apps: map[string]bool{}, services: map[string]bool{}}
	return w
}

// merge puts work back, after a failed pass.
func (q *queue) merge(w work) {
	q.mu.Lock()
	q.w.all = q.w.all || w.all
	q.w.schedule = q.w.schedule || w.schedule
	for a := range w.apps {
		q.w.apps[a] = true
	}
	for s := range w.services {
		q.w.services[s] = true
	}
	q.mu.Unlock()
	q.signal()
}

// nodeSignature is the part of a node that the controllers act on; a put
// that changes only heartbeats or addresses is not worth a full pass (the
// heartbeat deadline has its own timer).
func nodeSignature(n *api.Node) string {
	b, _ := json.Marshal(struct {
		Ready   bool
		Unsched bool
		Labels  map[string]string
		Alloc   api.Resources
	}{n.Ready(), n.Spec.Unschedulable, n.Spec.Labels, n.Status.Allocatable})
	return string(b)
}

// mark queues the work that a store event calls for.
func (q *queue) mark(ev api.WatchEvent) {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch ev.Kind {
	case api.KindPod:
		var p api.Pod
		if err := json.Unmarshal(ev.Object, &p); err != nil {
			q.w.all = true
			break
		}
		q.w.apps[p.Spec.App] = true
		q.w.schedule = true
	case api.KindApp:
		var m api.Meta
		if err := json.Unmarshal(ev.Object, &m); err != nil {
			q.w.all = true
			break
		}
		q.w.apps[m.Name] = true
	case api.KindService, api.KindEndpoints:
		var m api.Meta
		if err := json.Unmarshal(ev.Object, &m); err != nil {
			q.w.all = true
			break
		}
		q.w.services[m.Name] = true
	case api.KindNode:
		var n api.Node
		if err := json.Unmarshal(ev.Object, &n); err != nil {
			q.w.all = true
			break
		}
		sig := nodeSignature(&n)
		if ev.Type == api.EventDelete {
			sig = ""
		}
		if q.nodeSig[n.Name] == sig && sig != "" {
			// A heartbeat alone: the heartbeat deadline timer makes a pass
			// when one is missed.
			return
		}
		if sig == "" {
			delete(q.nodeSig, n.Name)
		} else {
			q.nodeSig[n.Name] = sig
		}
		q.w.all = true
	default: // events and unknown kinds: nothing to do
		return
	}
	q.signal()
}

// watch feeds store events into the queue until ctx ends. When the watch
// breaks (overflow, compaction) it marks everything, as after a re-list,
// and watches again from the current revision.
func (c *controller) watch(ctx context.Context, since int64) {
	for ctx.Err() == nil {
		ch, err := c.st.Watch(ctx, "", since)
		if err != nil {
			if !errors.Is(err, store.ErrCompacted) {
				c.log.Warn("watch store", "err", fmt.Errorf("watch from %d: %w", since, err))
				t := time.NewTimer(time.Second)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			}
			since = c.st.Rev()
			c.queue.markAll()
			continue
		}
		for ev := range ch {
			since = ev.Revision
			c.queue.mark(ev)
		}
		if ctx.Err() != nil {
			return
		}
		since = c.st.Rev()
		c.queue.markAll()
	}
}
