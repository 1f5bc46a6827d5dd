package apiserver

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// objectPtr is a pointer to an object type T.
type objectPtr[T any] interface {
	*T
	api.Object
}

// list answers GET on a collection: the objects that pass keep (nil keeps
// all) and the revision, or with ?watch=1 a stream of their events.
func list[T any, P objectPtr[T]](s *Server, w http.ResponseWriter, r *http.Request, kind string, keep func(P) bool) {
	watch, err := boolParam(r, "watch")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if watch {
		watchKind[T, P](s, w, r, kind, keep)
		return
	}
	var items []P
	rev, err := s.st.List(kind, &items)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if keep != nil {
		kept := items[:0]
		for _, it := range items {
			if keep(it) {
				kept = append(kept, it)
			}
		}
		items = kept
	}
	w.Header().Set("Skiff-Revision", strconv.FormatInt(rev, 10))
	writeJSON(w, http.StatusOK, api.List[P]{Revision: rev, Items: items})
}

// watchKind streams the events of kind after ?since= (default: the current
// revision) as NDJSON, one api.WatchEvent per line, flushed one by one. It
// ends when the client goes, the server stops, or the watcher fell behind
// compaction; the client then watches again from the last revision it saw.
func watchKind[T any, P objectPtr[T]](s *Server, w http.ResponseWriter, r *http.Request, kind string, keep func(P) bool) {
	since := s.st.Rev()
	if v := r.URL.Query().Get("since"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			s.writeError(w, r, invalid("since", "since must be a revision (an integer >= 0), not %q", v))
			return
		}
		since = n
	}
	release, lerr := s.watches.acquire(identityOf(r.Context()))
	if lerr != nil {
		s.writeError(w, r, lerr)
		return
	}
	// The stream ends when the request's context does (the client went,
	// the server stops): the store closes ch and the slot is free again.
	defer release()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	ch, err := s.st.Watch(ctx, kind, since)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	enc := json.NewEncoder(w)
	unflushed := false
	for ev := range ch {
		pass := true
		if keep != nil {
			var obj T
			if err := json.Unmarshal(ev.Object, P(&obj)); err != nil || !keep(P(&obj)) {
				pass = false
			}
		}
		if pass {
			if err := enc.Encode(ev); err != nil {
				return
			}
			unflushed = true
		}
		// Flush the events of a revision together: the channel has more
		// ready only while a backlog drains. A filtered-out event that
		// ends the backlog must flush what passed before it.
		if unflushed && len(ch) == 0 {
			if err := rc.Flush(); err != nil {
				return
			}
			unflushed = false
		}
	}
}

// get answers GET on one object.
func get[T any, P objectPtr[T]](s *Server, w http.ResponseWriter, r *http.Request, kind string) {
	var obj T
	if err := s.st.Get(kind, r.PathValue("name"), P(&obj)); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, P(&obj))
}

// listNodes and getNode show each Ready node's last heartbeat from its
// lease (kept in memory, see lease.go) when it is later than the stored
// one: the store is not written per beat, and `skiff describe node` should
// still say when the node last spoke. A watch carries the stored objects.
func (s *Server) listNodes(w http.ResponseWriter, r *http.Request) {
	if watch, _ := boolParam(r, "watch"); watch {
		list[api.Node](s, w, r, api.KindNode, nil)
		return
	}
	list[api.Node](s, w, r, api.KindNode, func(n *api.Node) bool {
		s.leases.overlay(n)
		return true
	})
}

func (s *Server) getNode(w http.ResponseWriter, r *http.Request) {
	var n api.Node
	if err := s.st.Get(api.KindNode, r.PathValue("name"), &n); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.leases.overlay(&n)
	writeJSON(w, http.StatusOK, &n)
}

func (s *Server) listApps(w http.ResponseWriter, r *http.Request) {
	list[api.App](s, w, r, api.KindApp, nil)
}

func (s *Server) getApp(w http.ResponseWriter, r *http.Request) { get[api.App](s, w, r, api.KindApp) }

// listPods filters by ?app= and ?node=.
func (s *Server) listPods(w http.ResponseWriter, r *http.Request) {
	app, node := r.URL.Query().Get("app"), r.URL.Query().Get("node")
	var keep func(*api.Pod) bool
	if app != "" || node != "" {
		keep = func(p *api.Pod) bool {
			return (app == "" || p.Spec.App == app) && (node == "" || p.Spec.Node == node)
		}
	}
	list[api.Pod](s, w, r, api.KindPod, keep)
}

func (s *Server) getPod(w http.ResponseWriter, r *http.Request) { get[api.Pod](s, w, r, api.KindPod) }

func (s *Server) listServices(w http.ResponseWriter, r *http.Request) {
	list[api.Service](s, w, r, api.KindService, nil)
}

func (s *Server) getService(w http.ResponseWriter, r *http.Request) {
	get[api.Service](s, w, r, api.KindService)
}

func (s *Server) listEndpoints(w http.ResponseWriter, r *http.Request) {
	list[api.Endpoints](s, w, r, api.KindEndpoints, nil)
}

func (s *Server) getEndpoints(w http.ResponseWriter, r *http.Request) {
	get[api.Endpoints](s, w, r, api.KindEndpoints)
}

// listEvents filters by ?object=kind/name.
func (s *Server) listEvents(w http.ResponseWriter, r *http.Request) {
	var keep func(*api.Event) bool
	if o := r.URL.Query().Get("object"); o != "" {
		keep = func(e *api.Event) bool { return e.Object == o }
	}
	list[api.Event](s, w, r, api.KindEvent, keep)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	w.Write([]byte("ok\n")) //nolint:errcheck
}

// revisionParam reads an optional ?revision= for conditional deletes.
func revisionParam(r *http.Request) (int64, error) {
	v := r.URL.Query().Get("revision")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, invalid("revision", "revision must be an integer >= 0, not %q", v)
	}
	return n, nil
}

// boolParam reads an optional boolean ?name= (1, t, true, 0, f, false...;
// absent or empty is false). Anything else is a 400 rather than a silent
// false: ?force=yes must not turn a forced delete into a graceful one.
func boolParam(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, invalid(name, "%s must be true or false (or 1 or 0), not %q", name, v)
	}
	return b, nil
}
