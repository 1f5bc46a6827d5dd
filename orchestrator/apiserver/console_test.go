package apiserver

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// TestConsoleHooks: /ui/ is a 404 until a console is mounted, then the TLS
// handler passes it through without a bearer token (the console signs its
// users in itself), while every other path still needs one; ServeAs runs
// the route table's check for the identity it is given and never reaches
// the console.
func TestConsoleHooks(t *testing.T) {
	s, _ := newTestServer(t, "")
	tcp := s.TCPHandler()
	get := func(h http.Handler, path string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec.Code
	}
	if code := get(tcp, "/ui/"); code != http.StatusNotFound {
		t.Errorf("/ui/ without a console: %d, want 404", code)
	}
	s.SetConsole(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	for _, path := range []string{"/ui/", "/ui/login", "/ui/apps/web"} {
		if code := get(tcp, path); code != http.StatusTeapot {
			t.Errorf("%s with a console, no token: %d, want the console's answer", path, code)
		}
	}
	for _, path := range []string{"/v1/apps", "/uix", "/metrics"} {
		if code := get(tcp, path); code != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d, want 401", path, code)
		}
	}
	read := Identity{Role: api.RoleRead, Token: "r1"}
	rec := httptest.NewRecorder()
	s.ServeAs(read, rec, httptest.NewRequest("GET", "/v1/apps", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("ServeAs read GET /v1/apps: %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	s.ServeAs(read, rec, httptest.NewRequest("POST", "/v1/apps/web/scale", nil))
	if rec.Code != http.StatusForbidden {
		t.Errorf("ServeAs read POST scale: %d, want 403", rec.Code)
	}
	rec = httptest.NewRecorder()
	s.ServeAs(localAdmin, rec, httptest.NewRequest("GET", "/ui/", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("ServeAs /ui/: %d, want 404 (the console is not an API route)", rec.Code)
	}
	join := Identity{Role: api.RoleJoin, Token: joinTokenID}
	if err := s.Authorize(join, "GET /v1/apps", httptest.NewRequest("GET", "/v1/apps", nil)); err == nil {
		t.Errorf("a join token may read apps")
	}
	if _, err := s.AuthenticateBearer("nope.nope"); err == nil {
		t.Errorf("an unknown token authenticates")
	}
}
