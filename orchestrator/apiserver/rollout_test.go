package apiserver

import (
	"encoding/json"
	"net/http"
	"strconv"
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

// applyWeb applies manifest JSON and returns web's action.
func applyWeb(t *testing.T, s *Server, manifest string) string {
	t.Helper()
	rec := serve(s, "POST", "/v1/apply", manifest)
	if rec.Code != http.StatusOK {
		t.Fatalf("apply: %d %s", rec.Code, rec.Body)
	}
	var resp api.ApplyResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.Results {
		if r.Kind == api.KindApp && r.Name == "web" {
			return r.Action
		}
	}
	t.Fatalf("apply results %+v lack app web", resp.Results)
	return ""
}

// A restart is a new revision that differs by the stamp only, and neither
// an apply of the manifest nor a PUT of its spec (which have no stamp)
// undoes it.
func TestRestart(t *testing.T) {
	s, st := newTestServer(t, "10.96.0.0/16")
	const manifest = `{"apps":{"web":{"replicas":2,"containers":{"main":{"image":"img:1"}}}}}`
	if got := applyWeb(t, s, manifest); got != api.ActionCreated {
		t.Fatalf("apply: %s", got)
	}
	before := getWeb(t, st)

	rec := serve(s, "POST", "/v1/apps/web/restart", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("restart: %d %s", rec.Code, rec.Body)
	}
	app := getWeb(t, st)
	if app.Spec.RestartedAt == "" || api.TemplateHash(&app.Spec) == api.TemplateHash(&before.Spec) {
		t.Fatalf("restart: stamp %q, hash %s as before", app.Spec.RestartedAt, api.TemplateHash(&app.Spec))
	}
	plain := app.Spec
	plain.RestartedAt = ""
	if !sameJSON(plain, before.Spec) {
		t.Fatalf("restart changed more than the stamp:\n%+v\n%+v", app.Spec, before.Spec)
	}
	if n := eventReasons(t, st, "apps/web")["RestartRequested"]; n != 1 {
		t.Fatalf("%d RestartRequested events, want 1", n)
	}
	restarted := api.TemplateHash(&app.Spec)

	// The manifest again: unchanged, and the stamp stays.
	if got := applyWeb(t, s, manifest); got != api.ActionUnchanged {
		t.Fatalf("re-apply after a restart: %s, want unchanged", got)
	}
	if got := getWeb(t, st); got.Revision != app.Revision || api.TemplateHash(&got.Spec) != restarted {
		t.Fatalf("re-apply rewrote the app: revision %d -> %d, hash %s", app.Revision, got.Revision, api.TemplateHash(&got.Spec))
	}
	// A PUT of the manifest's spec: the same.
	rec = serve(s, "PUT", "/v1/apps/web", `{"spec":{"replicas":2,"containers":{"main":{"image":"img:1"}}}}`)
	if got := getWeb(t, st); rec.Code != http.StatusOK || got.Revision != app.Revision {
		t.Fatalf("PUT of the same spec: %d %s, revision %d -> %d", rec.Code, rec.Body, app.Revision, got.Revision)
	}
	// A change of the manifest is a new template that keeps the stamp.
	if got := applyWeb(t, s, `{"apps":{"web":{"replicas":2,"containers":{"main":{"image":"img:2"}}}}}`); got != api.ActionConfigured {
		t.Fatalf("apply of img:2: %s", got)
	}
	if got := getWeb(t, st); got.Spec.RestartedAt != app.Spec.RestartedAt || got.Spec.Containers["main"].Image != "img:2" {
		t.Fatalf("after apply of img:2: stamp %q (want %q), image %s", got.Spec.RestartedAt, app.Spec.RestartedAt, got.Spec.Containers["main"].Image)
	}

	// Conditional on the app's revision.
	cur := getWeb(t, st)
	rec = serve(s, "POST", "/v1/apps/web/restart", `{"revision":`+strconv.FormatInt(cur.Revision, 10)+`}`)
	if rec.Code != http.StatusOK || getWeb(t, st).Spec.RestartedAt == cur.Spec.RestartedAt {
		t.Fatalf("restart at the current revision: %d %s", rec.Code, rec.Body)
	}
	last := getWeb(t, st)
	tests := []struct {
		name, path, body string
		status           int
		code, field      string
	}{
		{"stale revision", "/v1/apps/web/restart", `{"revision":` + strconv.FormatInt(cur.Revision, 10) + `}`, 409, api.CodeConflict, ""},
		{"negative revision", "/v1/apps/web/restart", `{"revision":-1}`, 400, api.CodeInvalid, "revision"},
		{"unknown field", "/v1/apps/web/restart", `{"at":"now"}`, 400, api.CodeInvalid, "at"},
		{"not an object", "/v1/apps/web/restart", `[]`, 400, api.CodeInvalid, ""},
		{"unknown app", "/v1/apps/nope/restart", ``, 404, api.CodeNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := serve(s, "POST", tt.path, tt.body)
			if rec.Code != tt.status {
				t.Fatalf("%d %s, want %d", rec.Code, rec.Body, tt.status)
			}
			var eb api.ErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Error.Code != tt.code || eb.Error.Field != tt.field {
				t.Fatalf("error %s (%v), want code %q field %q", rec.Body, err, tt.code, tt.field)
			}
		})
	}
	if got := getWeb(t, st); got.Revision != last.Revision {
		t.Fatalf("failed restarts wrote the app: revision %d -> %d", last.Revision, got.Revision)
	}
	if rec := serve(s, "GET", "/v1/apps/web/restart", ""); rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "POST" {
		t.Fatalf("GET restart: %d, Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
}
