package apiserver

import (
	"net/http"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// putServiceHolder records which node announces a load-balancer service's
// address (status.holder). The agent that takes the address over calls it;
// the body names the address as the agent knows it, so that a report about
// an address the service no longer has is a 409 and not written. The
// service is written only when the holder changes (nodes repeat their
// report until it is stored), and a node may name only itself (authz.go).
func (s *Server) putServiceHolder(w http.ResponseWriter, r *http.Request) {
	var body api.ServiceHolder
	if err := s.decode(w, r, &body, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	name := r.PathValue("name")
	var svc api.Service
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
		svc.Status.Holder = body.Holder
		return tx.Put(api.KindService, &svc)
	})
	s.answer(w, r, err, http.StatusOK, &svc)
}
