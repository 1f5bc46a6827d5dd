package apiserver

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// webSpec is app web's spec at image img, with replicas and an update
// strategy that a rollback must keep.
func webSpec(img string, replicas int, auto bool) configs.AppSpec {
	s := configs.AppSpec{
		Replicas:   &replicas,
		Update:     &configs.UpdateSpec{AutoRollback: auto},
		Containers: map[string]*configs.ContainerSpec{"main": {Image: img}},
	}
	s.SetDefaults()
	return s
}

// putWeb writes app web at spec with the given history (as the app
// controller records it).
func putWeb(t *testing.T, st *store.Store, spec configs.AppSpec, history ...configs.AppSpec) {
	t.Helper()
	app := api.App{Meta: api.Meta{Name: "web"}, Spec: spec}
	for _, h := range history {
		app.Status.History = append(app.Status.History, api.AppRevision{TemplateHash: api.TemplateHash(&h), Spec: h})
	}
	app.Status.TemplateHash = api.TemplateHash(&spec)
	if _, err := st.Update(func(tx *store.Tx) error { return tx.Put(api.KindApp, &app) }); err != nil {
		t.Fatal(err)
	}
}

func getWeb(t *testing.T, st *store.Store) api.App {
	t.Helper()
	var app api.App
	if err := st.Get(api.KindApp, "web", &app); err != nil {
		t.Fatal(err)
	}
	return app
}

func eventReasons(t *testing.T, st *store.Store, object string) map[string]int {
	t.Helper()
	var evs []api.Event
	if _, err := st.List(api.KindEvent, &evs); err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, e := range evs {
		if e.Object == object {
			n[e.Reason] += max(e.Count, 1)
		}
	}
	return n
}

// The API's rollback is api.Rollback: the template goes back, the app's
// replicas and update strategy stay, and the rollout is marked a rollback
// in the same write.
func TestRollbackKeepsStrategy(t *testing.T) {
	s, st := newTestServer(t, "10.96.0.0/16")
	v1, v2 := webSpec("img:1", 1, false), webSpec("img:2", 4, true)
	putWeb(t, st, v2, v1, v2)

	rec := serve(s, "POST", "/v1/apps/web/rollback", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("rollback: %d %s", rec.Code, rec.Body)
	}
	var answer api.App
	if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil {
		t.Fatal(err)
	}
	app := getWeb(t, st)
	if answer.Revision != app.Revision {
		t.Errorf("answer at revision %d, store at %d", answer.Revision, app.Revision)
	}
	if img := app.Spec.Containers["main"].Image; img != "img:1" || *app.Spec.Replicas != 4 || !app.Spec.Update.AutoRollback {
		t.Fatalf("after rollback: image %s, replicas %d, auto_rollback %v; want img:1, 4, true",
			img, *app.Spec.Replicas, app.Spec.Update.AutoRollback)
	}
	if ro := app.Status.Rollout; ro == nil || ro.TemplateHash != api.TemplateHash(&v1) || ro.RollbackOf != api.TemplateHash(&v2) {
		t.Fatalf("rollout %+v, want a rollback to v1 from v2", ro)
	}
	if n := eventReasons(t, st, "apps/web")["RollbackRequested"]; n != 1 {
		t.Fatalf("%d RollbackRequested events, want 1", n)
	}

	// To the current template: nothing to write.
	rec = serve(s, "POST", "/v1/apps/web/rollback", `{"template_hash":"`+api.TemplateHash(&v1)+`"}`)
	if rec.Code != http.StatusOK || getWeb(t, st).Revision != app.Revision {
		t.Fatalf("rollback to the current template: %d %s, revision %d -> %d", rec.Code, rec.Body, app.Revision, getWeb(t, st).Revision)
	}

	tests := []struct {
		name, path, body string
		status           int
		field            string
	}{
		{"unknown template", "/v1/apps/web/rollback", `{"template_hash":"0123456789"}`, 400, "template_hash"},
		{"unknown field", "/v1/apps/web/rollback", `{"hash":"x"}`, 400, "hash"},
		{"unknown app", "/v1/apps/nope/rollback", ``, 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := serve(s, "POST", tt.path, tt.body)
			if rec.Code != tt.status {
				t.Fatalf("%d %s, want %d", rec.Code, rec.Body, tt.status)
			}
			var eb api.ErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Error.Field != tt.field {
				t.Fatalf("error %s (%v), want field %q", rec.Body, err, tt.field)
			}
		})
	}
	putWeb(t, st, v1, v1)
	if rec := serve(s, "POST", "/v1/apps/web/rollback", ""); rec.Code != http.StatusConflict {
		t.Fatalf("rollback without an earlier revision: %d %s, want 409", rec.Code, rec.Body)
	}
}
