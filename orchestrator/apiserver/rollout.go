package apiserver

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// rollbackApp puts an earlier pod template of the app back in its spec
// (api.Rollback: the template only; replicas, mode, update and autoscale
// stay); the app controller then rolls the pods to it. Without a
// template_hash it picks the newest template before the current one. A
// rollback to the current template writes nothing.
func (s *Server) rollbackApp(w http.ResponseWriter, r *http.Request) {
	var req api.RollbackRequest
	if err := s.decode(w, r, &req, true); err != nil {
		s.writeError(w, r, err)
		return
	}
	name := r.PathValue("name")
	var app api.App
	_, err := s.st.Update(func(tx *store.Tx) error {
		if err := tx.Get(api.KindApp, name, &app); err != nil {
			return err
		}
		from, to, err := api.Rollback(&app, req.TemplateHash)
		switch {
		case errors.Is(err, api.ErrNoRevision) && req.TemplateHash != "":
			return invalid("template_hash", "app %q has no revision with template hash %q", name, req.TemplateHash)
		case errors.Is(err, api.ErrNoRevision):
			return conflict("app %q has no earlier revision to roll back to", name)
		case err != nil:
			return err
		case from == to:
			return nil
		}
		if err := tx.Put(api.KindApp, &app); err != nil {
			return err
		}
		return tx.RecordEvent(api.KindApp+"/"+name, api.EventNormal, "RollbackRequested",
			fmt.Sprintf("rolling back from template %s to %s", from, to), eventSource)
	})
	s.answer(w, r, err, http.StatusOK, &app)
}

// restartApp stamps the app's pod template with the time (api.Restart): a
// new revision that differs from the current one only by the stamp, which
// the app controller rolls out like any other, replacing every pod. A
// later apply of the manifest keeps the stamp (api.KeepRestart).
func (s *Server) restartApp(w http.ResponseWriter, r *http.Request) {
	var req api.RestartRequest
	if err := s.decode(w, r, &req, true); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Revision < 0 {
		s.writeError(w, r, invalid("revision", "revision must be >= 0, not %d", req.Revision))
		return
	}
	name := r.PathValue("name")
	var app api.App
	_, err := s.st.Update(func(tx *store.Tx) error {
		if err := tx.Get(api.KindApp, name, &app); err != nil {
			return err
		}
		if req.Revision != 0 {
			app.Revision = req.Revision // a stale one makes the Put a conflict
		}
		stamp := api.Restart(&app, tx.Now())
		if err := tx.Put(api.KindApp, &app); err != nil {
			return err
		}
		return tx.RecordEvent(api.KindApp+"/"+name, api.EventNormal, "RestartRequested",
			fmt.Sprintf("restarted at %s: template %s replaces every pod", stamp, api.TemplateHash(&app.Spec)), eventSource)
	})
	s.answer(w, r, err, http.StatusOK, &app)
}
