package api

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/configs"
)

// specOf is a spec of image img with the given replicas and update
// strategy: what a history entry or an app holds.
func specOf(img string, replicas int, auto bool) configs.AppSpec {
	return configs.AppSpec{
		Replicas:   ptr(replicas),
		Update:     &configs.UpdateSpec{AutoRollback: auto, MaxSurge: ptr(replicas)},
		Containers: map[string]*configs.ContainerSpec{"main": {Image: img}},
	}
}

func TestRollback(t *testing.T) {
	// History entries keep the whole spec as it was (other replicas and
	// strategy than the app's now); a rollback takes only the template.
	rev := func(img string) AppRevision {
		s := specOf(img, 1, false)
		return AppRevision{TemplateHash: TemplateHash(&s), Spec: s}
	}
	hash := func(img string) string { return rev(img).TemplateHash }
	tests := []struct {
		name    string
		spec    string   // the app's image now
		history []string // images, oldest first
		toHash  string
		want    string // the image after, "" for an error
		noop    bool
	}{
		{name: "previous template", spec: "v2", history: []string{"v1", "v2"}, want: "v1"},
		{name: "newest of several", spec: "v3", history: []string{"v1", "v2", "v3"}, want: "v2"},
		{name: "spec not yet seen by the controller", spec: "v3", history: []string{"v1", "v2"}, want: "v2"},
		{name: "undo of a rollback goes forward again", spec: "v1", history: []string{"v2", "v1"}, want: "v2"},
		{name: "older template applied, not yet seen", spec: "v1", history: []string{"v1", "v2"}, want: "v2"},
		{name: "a given template", spec: "v3", history: []string{"v1", "v2", "v3"}, toHash: hash("v1"), want: "v1"},
		{name: "the current template", spec: "v2", history: []string{"v1", "v2"}, toHash: hash("v2"), want: "v2", noop: true},
		{name: "unknown template", spec: "v2", history: []string{"v1", "v2"}, toHash: "0123456789"},
		{name: "no history", spec: "v1"},
		{name: "only the current template", spec: "v1", history: []string{"v1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mk := func() *App {
				app := &App{Meta: Meta{Name: "web"}, Spec: specOf(tt.spec, 5, true)}
				app.Spec.Autoscale = &configs.AutoscaleSpec{Min: 2, Max: 8}
				for _, img := range tt.history {
					app.Status.History = append(app.Status.History, rev(img))
				}
				return app
			}
			app, before := mk(), mk()
			from, to, err := Rollback(app, tt.toHash)
			if from != hash(tt.spec) {
				t.Errorf("from = %s, want the current template %s", from, hash(tt.spec))
			}
			if tt.want == "" {
				if !errors.Is(err, ErrNoRevision) {
					t.Fatalf("err = %v, want ErrNoRevision", err)
				}
				if !reflect.DeepEqual(app, before) {
					t.Fatalf("app changed on error: %+v", app)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := app.Spec.Containers["main"].Image; got != tt.want || to != hash(tt.want) || TemplateHash(&app.Spec) != to {
				t.Fatalf("rolled back to image %s (to %s, spec hash %s), want %s (%s)", got, to, TemplateHash(&app.Spec), tt.want, hash(tt.want))
			}
			// Template only: the app's scale and strategy stay.
			if *app.Spec.Replicas != 5 || !app.Spec.Update.AutoRollback || *app.Spec.Update.MaxSurge != 5 ||
				app.Spec.Autoscale == nil || app.Spec.Autoscale.Max != 8 {
				t.Fatalf("rollback changed more than the template: %+v (update %+v)", app.Spec, app.Spec.Update)
			}
			if tt.noop {
				if from != to || !reflect.DeepEqual(app, before) {
					t.Fatalf("rollback to the current template: from %s to %s, app changed: %+v", from, to, app)
				}
				return
			}
			if ro := app.Status.Rollout; ro == nil || ro.TemplateHash != to || ro.RollbackOf != from {
				t.Fatalf("rollout %+v, want a rollback to %s from %s", ro, to, from)
			}
		})
	}
}

func TestRestart(t *testing.T) {
	now := time.Date(2026, 3, 1, 9, 30, 0, 5, time.FixedZone("x", 3600))
	app := &App{Meta: Meta{Name: "web"}, Spec: specOf("v1", 3, true)}
	before := TemplateHash(&app.Spec)
	stamp := Restart(app, now)
	if stamp != "2026-03-01T08:30:00.000000005Z" || app.Spec.RestartedAt != stamp {
		t.Fatalf("stamp %q (spec %q), want the UTC time", stamp, app.Spec.RestartedAt)
	}
	after := TemplateHash(&app.Spec)
	if after == before {
		t.Fatal("a restart left the template hash as it was")
	}
	// The stamp is all that differs.
	plain := app.Spec
	plain.RestartedAt = ""
	if TemplateHash(&plain) != before || !reflect.DeepEqual(plain, specOf("v1", 3, true)) {
		t.Fatalf("a restart changed more than the stamp: %+v", app.Spec)
	}
	// Twice at the same time: still a new revision.
	if again := Restart(app, now); again == stamp || TemplateHash(&app.Spec) == after {
		t.Fatalf("second restart at the same time: stamp %q, hash %s", again, TemplateHash(&app.Spec))
	}
}

func TestKeepRestart(t *testing.T) {
	const old, mine = "2026-01-01T00:00:00Z", "2026-02-02T00:00:00Z"
	tests := []struct {
		name, spec, stored, want string
	}{
		{"a manifest keeps the stored stamp", "", old, old},
		{"a stamp of its own stays", mine, old, mine},
		{"nothing stored", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, stored := specOf("v2", 1, false), specOf("v1", 1, false)
			spec.RestartedAt, stored.RestartedAt = tt.spec, tt.stored
			KeepRestart(&spec, &stored)
			if spec.RestartedAt != tt.want || spec.Containers["main"].Image != "v2" {
				t.Fatalf("stamp %q image %s, want %q and v2", spec.RestartedAt, spec.Containers["main"].Image, tt.want)
			}
		})
	}
}
