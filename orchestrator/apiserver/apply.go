package apiserver

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// errDryRun rolls back a dry-run apply after it computed its results.
var errDryRun = errors.New("dry run")

// apply writes every app and service of a manifest in one transaction: all
// of them or, on any error, none. It answers per object created,
// configured or unchanged. Objects not in the manifest are left alone.
func (s *Server) apply(w http.ResponseWriter, r *http.Request) {
	var req api.ApplyRequest
	if err := s.decode(w, r, &req, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	m := &req.Manifest
	if len(m.Apps) == 0 && len(m.Services) == 0 && len(m.Configs) == 0 && len(m.Secrets) == 0 {
		s.writeError(w, r, invalid("", "the manifest has no apps, services, configs or secrets"))
		return
	}
	m.SetDefaults()
	if err := s.validateManifest(m); err != nil {
		s.writeError(w, r, err)
		return
	}
	var resp api.ApplyResponse
	rev, err := s.st.Update(func(tx *store.Tx) error {
		resp.Results = resp.Results[:0]
		// Configs and secrets first: the apps of the same manifest take
		// their versions.
		for _, name := range slices.Sorted(maps.Keys(m.Configs)) {
			var out api.Config
			action, err := writeConfig(tx, name, m.Configs[name], 0, &out)
			if err != nil {
				return err
			}
			resp.Results = append(resp.Results, api.ApplyResult{Kind: api.KindConfig, Name: name, Action: action})
		}
		for _, name := range slices.Sorted(maps.Keys(m.Secrets)) {
			var out api.Secret
			action, err := s.writeSecret(tx, name, m.Secrets[name], 0, &out)
			if err != nil {
				return err
			}
			resp.Results = append(resp.Results, api.ApplyResult{Kind: api.KindSecret, Name: name, Action: action})
		}
		for _, name := range slices.Sorted(maps.Keys(m.Apps)) {
			if err := fillContentHashes(tx, name, m.Apps[name]); err != nil {
				return err
			}
			action, err := applyApp(tx, name, m.Apps[name])
			if err != nil {
				return err
			}
			resp.Results = append(resp.Results, api.ApplyResult{Kind: api.KindApp, Name: name, Action: action})
		}
		// Services that ask for a given address, cluster IP or node port
		// are written first, so that one the server picks for another
		// service of the same manifest cannot take it from them.
		names := slices.Sorted(maps.Keys(m.Services))
		slices.SortStableFunc(names, func(a, b string) int {
			return cmpBool(asksAllocation(m.Services[b]), asksAllocation(m.Services[a]))
		})
		actions := map[string]string{}
		for _, name := range names {
			var out api.Service
			action, err := s.writeService(tx, name, m.Services[name], 0, &out)
			if err != nil {
				return err
			}
			actions[name] = action
		}
		for _, name := range slices.Sorted(maps.Keys(actions)) {
			resp.Results = append(resp.Results, api.ApplyResult{Kind: api.KindService, Name: name, Action: actions[name]})
		}
		if req.DryRun {
			return errDryRun
		}
		return nil
	})
	switch {
	case errors.Is(err, errDryRun):
		resp.DryRun = true
		rev = s.st.Rev()
	case err != nil:
		s.writeError(w, r, err)
		return
	}
	resp.Revision = rev
	writeJSON(w, http.StatusOK, &resp)
}

// applyApp writes one app's spec in tx, keeping its status and its restart
// stamp (api.KeepRestart).
func applyApp(tx *store.Tx, name string, spec *configs.AppSpec) (string, error) {
	var old api.App
	err := tx.Get(api.KindApp, name, &old)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return api.ActionCreated, tx.Create(api.KindApp, &api.App{Meta: api.Meta{Name: name}, Spec: *spec})
	case err != nil:
		return "", err
	}
	next := *spec
	api.KeepRestart(&next, &old.Spec)
	if sameJSON(old.Spec, next) {
		return api.ActionUnchanged, nil
	}
	old.Spec = next
	return api.ActionConfigured, tx.Put(api.KindApp, &old)
}

// scaleApp sets an app's replicas.
func (s *Server) scaleApp(w http.ResponseWriter, r *http.Request) {
	var req api.ScaleRequest
	if err := s.decode(w, r, &req, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Replicas == nil {
		s.writeError(w, r, invalid("replicas", "replicas is required"))
		return
	}
	if *req.Replicas < 0 {
		s.writeError(w, r, invalid("replicas", "replicas must be >= 0, not %d", *req.Replicas))
		return
	}
	if *req.Replicas > s.opts.MaxReplicas {
		s.writeError(w, r, invalid("replicas", "replicas %s", replicasMsg(*req.Replicas, s.opts.MaxReplicas)))
		return
	}
	name := r.PathValue("name")
	var app api.App
	_, err := s.st.Update(func(tx *store.Tx) error {
		if err := tx.Get(api.KindApp, name, &app); err != nil {
			return err
		}
		if app.Spec.Mode == configs.ModePerNode {
			return invalid("replicas", "app %q runs one pod per node: it has no replicas to scale", name)
		}
		if as := app.Spec.Autoscale; as != nil {
			// Refused, not clamped: a count set by hand would last only
			// until the autoscaler's next pass.
			return invalid("replicas", "app %q is autoscaled between %d and %d replicas: change min and max in [app.%s.autoscale] "+
				"and apply, or remove [app.%s.autoscale] to set replicas by hand", name, as.Min, as.Max, name, name)
		}
		before := 0
		if app.Spec.Replicas != nil {
			before = *app.Spec.Replicas
		}
		n := *req.Replicas
		if req.Revision != 0 {
			app.Revision = req.Revision
		} else if before == n {
			return nil
		}
		app.Spec.Replicas = &n
		if err := tx.Put(api.KindApp, &app); err != nil {
			return err
		}
		return tx.RecordEvent(api.KindApp+"/"+name, api.EventNormal, "Scaled",
			fmt.Sprintf("replicas %d -> %d", before, n), eventSource)
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, &app)
}

// asksAllocation says whether a service names an address, cluster IP or
// node port of its own rather than letting the server pick one.
func asksAllocation(svc *configs.ServiceSpec) bool {
	return svc.WantAddress() != "" || svc.ClusterIP != "" || svc.NodePort != 0
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}
