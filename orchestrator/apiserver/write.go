package apiserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// eventSource names the API server in events it records.
const eventSource = "apiserver"

// checkName makes the name in a body agree with the path: empty takes the
// path's, anything else must equal it.
func checkName(m *api.Meta, path string) error {
	if !configs.ValidName(path) {
		return invalid("name", "%q is not a valid name (lower-case letters, digits and '-', at most 63)", path)
	}
	if m.Name == "" {
		m.Name = path
	}
	if m.Name != path {
		return invalid("name", "name %q in the body differs from %q in the path", m.Name, path)
	}
	return nil
}

// decodeNamed decodes a request body into obj and checks that its name
// agrees with the path's.
func (s *Server) decodeNamed(w http.ResponseWriter, r *http.Request, obj api.Object) error {
	if err := s.decode(w, r, obj, false); err != nil {
		return err
	}
	return checkName(obj.GetMeta(), r.PathValue("name"))
}

// answer writes out with status, or err if the write failed.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, err error, status int, out any) {
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, status, out)
}

// sameJSON reports whether a and b encode alike.
func sameJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

// putApp creates or replaces an app's spec. The status stays the
// controller's, and the restart stamp the stored one if the spec has none
// (api.KeepRestart). A spec equal to the stored one writes nothing.
func (s *Server) putApp(w http.ResponseWriter, r *http.Request) {
	var app api.App
	if err := s.decodeNamed(w, r, &app); err != nil {
		s.writeError(w, r, err)
		return
	}
	app.Spec.SetDefaults()
	if err := s.validateApp(app.Name, &app.Spec); err != nil {
		s.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	var out api.App
	_, err := s.st.Update(func(tx *store.Tx) error {
		if err := fillContentHashes(tx, app.Name, &app.Spec); err != nil {
			return err
		}
		var old api.App
		err := tx.Get(api.KindApp, app.Name, &old)
		switch {
		case errors.Is(err, store.ErrNotFound):
			if app.Revision != 0 {
				return err
			}
			app.Status = api.AppStatus{}
			status = http.StatusCreated
			out = app
			return tx.Create(api.KindApp, &out)
		case err != nil:
			return err
		case app.Revision != 0 && app.Revision != old.Revision:
			old.Revision = app.Revision
			return tx.Put(api.KindApp, &old) // the conflict, with its message
		}
		spec := app.Spec
		api.KeepRestart(&spec, &old.Spec)
		out = old
		if sameJSON(old.Spec, spec) {
			return nil
		}
		out.Spec = spec
		return tx.Put(api.KindApp, &out)
	})
	s.answer(w, r, err, status, &out)
}

// putService creates or replaces a service's spec and allocates its cluster
// IP and node port in the same transaction.
func (s *Server) putService(w http.ResponseWriter, r *http.Request) {
	var svc api.Service
	if err := s.decodeNamed(w, r, &svc); err != nil {
		s.writeError(w, r, err)
		return
	}
	svc.Spec.SetDefaults()
	if err := s.validateService(svc.Name, &svc.Spec); err != nil {
		s.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	_, err := s.st.Update(func(tx *store.Tx) error {
		action, err := s.writeService(tx, svc.Name, &svc.Spec, svc.Revision, &svc)
		if action == api.ActionCreated {
			status = http.StatusCreated
		}
		return err
	})
	s.answer(w, r, err, status, &svc)
}

// writeService writes one service spec in tx (conditional on rev if not
// zero) and leaves the stored object in out.
func (s *Server) writeService(tx *store.Tx, name string, spec *configs.ServiceSpec, rev int64, out *api.Service) (action string, err error) {
	var old api.Service
	err = tx.Get(api.KindService, name, &old)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	exists := err == nil
	if !exists && rev != 0 {
		return "", err
	}
	if exists && rev != 0 && rev != old.Revision {
		old.Revision = rev
		return "", tx.Put(api.KindService, &old)
	}
	next := api.Service{Meta: api.Meta{Name: name}, Spec: *spec}
	var prev *api.Service
	if exists {
		prev = &old
		next.Meta = old.Meta
	}
	if err := s.allocateService(tx, &next, prev); err != nil {
		return "", err
	}
	if !exists {
		*out = next
		return api.ActionCreated, tx.Create(api.KindService, out)
	}
	if sameJSON(old.Spec, next.Spec) && old.Status == next.Status {
		*out = old
		return api.ActionUnchanged, nil
	}
	*out = next
	return api.ActionConfigured, tx.Put(api.KindService, out)
}

// putNode registers a node or updates its spec and status (agents call it
// to register and report). The server keeps the node's pod CIDR: it
// allocates one at the first registration.
func (s *Server) putNode(w http.ResponseWriter, r *http.Request) {
	var node api.Node
	if err := s.decodeNamed(w, r, &node); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := validateNode(&node); err != nil {
		s.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	_, err := s.st.Update(func(tx *store.Tx) error {
		var old api.Node
		err := tx.Get(api.KindNode, node.Name, &old)
		var prev *api.Node
		switch {
		case err == nil:
			prev = &old
		case !errors.Is(err, store.ErrNotFound):
			return err
		default:
			status = http.StatusCreated
		}
		if err := s.allocatePodCIDR(tx, &node, prev); err != nil {
			return err
		}
		// A node that says again what it said (an agent restarting)
		// writes nothing: node status is written only on change.
		_, err = tx.PutIfChanged(api.KindNode, &node)
		return err
	})
	s.answer(w, r, err, status, &node)
}

// putPodStatus sets a pod's status (its node's agent reports it). The body
// is a pod; only status and (for a conditional write) revision are read.
func (s *Server) putPodStatus(w http.ResponseWriter, r *http.Request) {
	var body api.Pod
	if err := s.decode(w, r, &body, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	name := r.PathValue("name")
	var pod api.Pod
	_, err := s.st.Update(func(tx *store.Tx) error {
		if err := tx.Get(api.KindPod, name, &pod); err != nil {
			return err
		}
		// Checked against the stored pod, in the transaction: the status
		// names the containers of the pod as it is.
		if err := validatePodStatus(&body.Status, &pod); err != nil {
			return err
		}
		if body.Revision != 0 {
			pod.Revision = body.Revision
		}
		pod.Status = body.Status
		_, err := tx.PutIfChanged(api.KindPod, &pod)
		return err
	})
	s.answer(w, r, err, http.StatusOK, &pod)
}

// deletePodTx deletes a pod gracefully: a pod running on a Ready node is
// marked Deleting (its agent stops it, then removes the object); any other
// pod is removed at once. nodes caches node lookups.
func deletePodTx(tx *store.Tx, pod *api.Pod, rev int64, nodes map[string]*api.Node) (deleted bool, err error) {
	if pod.Spec.Node != "" {
		n, ok := nodes[pod.Spec.Node]
		if !ok {
			var node api.Node
			switch err := tx.Get(api.KindNode, pod.Spec.Node, &node); {
			case err == nil:
				n = &node
			case !errors.Is(err, store.ErrNotFound):
				return false, err
			}
			nodes[pod.Spec.Node] = n
		}
		if n != nil && n.Ready() {
			if pod.Spec.Deleting != nil {
				return false, nil
			}
			now := tx.Now()
			pod.Spec.Deleting = &now
			if rev != 0 {
				pod.Revision = rev
			}
			return false, tx.Put(api.KindPod, pod)
		}
	}
	return true, tx.Delete(api.KindPod, pod.Name, rev)
}

// deletePod deletes a pod gracefully (see deletePodTx), or at once with
// ?force=true or when it is already marked deleting.
func (s *Server) deletePod(w http.ResponseWriter, r *http.Request) {
	rev, err := revisionParam(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	force, err := boolParam(r, "force")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	name := r.PathValue("name")
	var resp api.DeleteResponse
	_, err = s.st.Update(func(tx *store.Tx) error {
		var pod api.Pod
		if err := tx.Get(api.KindPod, name, &pod); err != nil {
			return err
		}
		deleted := true
		// A pod already marked goes at once: the second DELETE is its
		// agent's, done stopping it (or a user insisting).
		if force || pod.Spec.Deleting != nil {
			err = tx.Delete(api.KindPod, name, rev)
		} else {
			deleted, err = deletePodTx(tx, &pod, rev, map[string]*api.Node{})
		}
		if deleted {
			resp.PodsDeleted = 1
		} else {
			resp.PodsMarked = 1
		}
		resp.Object, _ = json.Marshal(&pod)
		return err
	})
	s.answer(w, r, err, http.StatusOK, &resp)
}

// deleteObject answers DELETE on one object of kind: it deletes the object
// (conditional on ?revision=) and, in the same transaction, runs also (if
// not nil) to delete what depends on it. The answer carries the object as
// it was last written.
func deleteObject[T any, P objectPtr[T]](s *Server, w http.ResponseWriter, r *http.Request, kind string,
	also func(tx *store.Tx, name string, resp *api.DeleteResponse) error) {
	rev, err := revisionParam(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	name := r.PathValue("name")
	var resp api.DeleteResponse
	_, err = s.st.Update(func(tx *store.Tx) error {
		var obj T
		if err := tx.Get(kind, name, P(&obj)); err != nil {
			return err
		}
		if err := tx.Delete(kind, name, rev); err != nil {
			return err
		}
		raw, err := json.Marshal(P(&obj))
		if err != nil {
			return err
		}
		resp.Object = raw
		if also != nil {
			return also(tx, name, &resp)
		}
		return nil
	})
	s.answer(w, r, err, http.StatusOK, &resp)
}

// deleteApp deletes an app and, in the same transaction, its pods
// gracefully.
func (s *Server) deleteApp(w http.ResponseWriter, r *http.Request) {
	deleteObject[api.App](s, w, r, api.KindApp, deleteAppPods)
}

// deleteAppPods deletes (or marks, see deletePodTx) the pods of app name
// and counts them in resp.
func deleteAppPods(tx *store.Tx, name string, resp *api.DeleteResponse) error {
	var pods []*api.Pod
	if err := tx.List(api.KindPod, &pods); err != nil {
		return err
	}
	nodes := map[string]*api.Node{}
	for _, p := range pods {
		if p.Spec.App != name {
			continue
		}
		deleted, err := deletePodTx(tx, p, 0, nodes)
		if err != nil {
			return err
		}
		if deleted {
			resp.PodsDeleted++
		} else {
			resp.PodsMarked++
		}
	}
	return nil
}

// deleteService deletes a service and its endpoints object.
func (s *Server) deleteService(w http.ResponseWriter, r *http.Request) {
	deleteObject[api.Service](s, w, r, api.KindService, func(tx *store.Tx, name string, _ *api.DeleteResponse) error {
		if err := tx.Delete(api.KindEndpoints, name, 0); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return nil
	})
}

// putPod writes a whole pod (for controllers that run out of process); a
// non-zero revision makes it conditional.
func (s *Server) putPod(w http.ResponseWriter, r *http.Request) {
	var pod api.Pod
	if err := s.decodeNamed(w, r, &pod); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.validatePod(&pod); err != nil {
		s.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	_, err := s.st.Update(func(tx *store.Tx) error {
		var old api.Pod
		switch err := tx.Get(api.KindPod, pod.Name, &old); {
		case errors.Is(err, store.ErrNotFound):
			status = http.StatusCreated
		case err != nil:
			return err
		}
		return tx.Put(api.KindPod, &pod)
	})
	s.answer(w, r, err, status, &pod)
}
