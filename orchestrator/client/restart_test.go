package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
)

func TestRestart(t *testing.T) {
	var gotBody string
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/apps/web/restart", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		gotBody = string(b)
		fmt.Fprint(w, `{"name":"web","revision":12,"spec":{"containers":{},"restarted_at":"2026-01-01T12:00:00Z"}}`)
	})
	mux.HandleFunc("POST /v1/apps/nope/restart", func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, http.StatusNotFound, "not_found", `app "nope" not found`)
	})
	c := unixServer(t, mux)
	app, err := c.Restart(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	if app.Revision != 12 || app.Spec.RestartedAt != "2026-01-01T12:00:00Z" {
		t.Errorf("Restart = %+v", app)
	}
	if gotBody != "{}" {
		t.Errorf("body %q, want {}", gotBody)
	}
	if _, err := c.Restart(context.Background(), "nope"); !IsNotFound(err) {
		t.Errorf("Restart of a missing app: %v, want not found", err)
	}
}
