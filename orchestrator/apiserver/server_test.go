package apiserver

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
	"github.com/skiff-edge/skiff/orchestrator/store/storetest"
)

// lbTestServer is a server whose [lb] pool is 192.0.2.240-192.0.2.241.
func lbTestServer(t testing.TB) (*Server, *store.Store) {
	t.Helper()
	st := storetest.Open(t)
	lb := configs.LB{Pools: []string{"192.0.2.240-192.0.2.241"}}
	return New(st, Options{CheckExternalIP: lb.CheckExternalIP, FreeExternalIP: lb.FreeAddress}), st
}

// serve sends one request to s and returns the recorded answer.
func serve(s *Server, method, target, body string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(method, target, strings.NewReader(body)))
	return rec
}

func TestMethodNotAllowed(t *testing.T) {
	s, _ := newTestServer(t, "10.96.0.0/16")
	tests := []struct {
		method, path, allow string
	}{
		{"PATCH", "/v1/apps/web", "DELETE, GET, PUT"},
		{"POST", "/v1/pods/p1", "DELETE, GET, PUT"},
		{"DELETE", "/v1/events", "GET, POST"},
		{"GET", "/v1/apply", "POST"},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			// Several tries: the Allow list must not follow map order.
			for range 5 {
				rec := serve(s, tc.method, tc.path, "")
				if rec.Code != http.StatusMethodNotAllowed {
					t.Fatalf("status %d, want 405: %s", rec.Code, rec.Body)
				}
				if got := rec.Header().Get("Allow"); got != tc.allow {
					t.Fatalf("Allow %q, want %q", got, tc.allow)
				}
				var eb api.ErrorBody
				if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Error.Code != api.CodeInvalid {
					t.Fatalf("body %s (%v), want code %q", rec.Body, err, api.CodeInvalid)
				}
			}
		})
	}
}

// TestDelete covers DELETE of apps and services: the answer carries the
// object, dependents go in the same transaction, and a stale or malformed
// ?revision= changes nothing.
func TestDelete(t *testing.T) {
	s, st := newTestServer(t, "10.96.0.0/16")
	rev, err := st.Update(func(tx *store.Tx) error {
		for _, err := range []error{
			tx.Put(api.KindApp, &api.App{Meta: api.Meta{Name: "web"}}),
			tx.Put(api.KindPod, &api.Pod{Meta: api.Meta{Name: "web-1"}, Spec: api.PodSpec{App: "web"}}),
			tx.Put(api.KindPod, &api.Pod{Meta: api.Meta{Name: "web-2"}, Spec: api.PodSpec{App: "web"}}),
			tx.Put(api.KindPod, &api.Pod{Meta: api.Meta{Name: "db-1"}, Spec: api.PodSpec{App: "db"}}),
			tx.Put(api.KindService, &api.Service{Meta: api.Meta{Name: "web"}}),
			tx.Put(api.KindEndpoints, &api.Endpoints{Meta: api.Meta{Name: "web"}}),
		} {
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// exists reads only the meta of an object, so any kind will do.
	type metaOnly struct{ api.Meta }
	exists := func(kind, name string) bool {
		err := st.View(func(tx *store.Tx) error { return tx.Get(kind, name, &metaOnly{}) })
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	steps := []struct {
		name, target string
		status       int
		check        func(t *testing.T, resp api.DeleteResponse)
	}{
		{"bad revision", "/v1/apps/web?revision=x", 400, func(t *testing.T, _ api.DeleteResponse) {
			if !exists(api.KindApp, "web") {
				t.Error("app gone after a rejected delete")
			}
		}},
		{"stale revision", "/v1/apps/web?revision=" + strconv.FormatInt(rev+5, 10), 409, func(t *testing.T, _ api.DeleteResponse) {
			if !exists(api.KindApp, "web") || !exists(api.KindPod, "web-1") {
				t.Error("app or pod gone after a conflicting delete")
			}
		}},
		{"app", "/v1/apps/web?revision=" + strconv.FormatInt(rev, 10), 200, func(t *testing.T, resp api.DeleteResponse) {
			var app api.App
			if err := json.Unmarshal(resp.Object, &app); err != nil || app.Name != "web" {
				t.Errorf("answer object %s (%v)", resp.Object, err)
			}
			if resp.PodsDeleted != 2 || resp.PodsMarked != 0 {
				t.Errorf("pods deleted %d marked %d, want 2 and 0 (unbound pods go at once)", resp.PodsDeleted, resp.PodsMarked)
			}
			if exists(api.KindPod, "web-1") || exists(api.KindPod, "web-2") || !exists(api.KindPod, "db-1") {
				t.Error("delete of app web must take its pods and only those")
			}
		}},
		{"app again", "/v1/apps/web", 404, nil},
		{"service", "/v1/services/web", 200, func(t *testing.T, resp api.DeleteResponse) {
			var svc api.Service
			if err := json.Unmarshal(resp.Object, &svc); err != nil || svc.Name != "web" {
				t.Errorf("answer object %s (%v)", resp.Object, err)
			}
			if exists(api.KindEndpoints, "web") {
				t.Error("the service's endpoints outlived it")
			}
		}},
		{"service again", "/v1/services/web", 404, nil},
	}
	for _, step := range steps {
		ok := t.Run(step.name, func(t *testing.T) {
			rec := serve(s, "DELETE", step.target, "")
			if rec.Code != step.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, step.status, rec.Body)
			}
			if step.check != nil {
				var resp api.DeleteResponse
				if rec.Code == 200 {
					if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
						t.Fatal(err)
					}
				}
				step.check(t, resp)
			}
		})
		if !ok {
			return // later steps build on this one
		}
	}
}

// TestBadBoolParam: a boolean query parameter that is not one is a 400
// naming it, not a silent false, and changes nothing.
func TestBadBoolParam(t *testing.T) {
	s, st := newTestServer(t, "10.96.0.0/16")
	if _, err := st.Update(func(tx *store.Tx) error {
		return tx.Put(api.KindPod, &api.Pod{Meta: api.Meta{Name: "p1"}, Spec: api.PodSpec{App: "a", Node: "n1"}})
	}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		method, target, field string
	}{
		{"GET", "/v1/pods?watch=yes", "watch"},
		{"DELETE", "/v1/pods/p1?force=yes", "force"},
		{"GET", "/v1/pods/p1/logs?follow=maybe", "follow"},
	}
	for _, tc := range tests {
		t.Run(tc.target, func(t *testing.T) {
			rec := serve(s, tc.method, tc.target, "")
			var eb api.ErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || rec.Code != 400 || eb.Error.Field != tc.field {
				t.Fatalf("status %d body %s (%v), want 400 on field %q", rec.Code, rec.Body, err, tc.field)
			}
		})
	}
	var p api.Pod
	if err := st.Get(api.KindPod, "p1", &p); err != nil || p.Spec.Deleting != nil {
		t.Fatalf("pod after the rejected delete: %+v (%v)", p.Spec, err)
	}
	// The accepted spellings still work.
	for _, target := range []string{"/v1/pods?watch=0", "/v1/pods?watch=false"} {
		if rec := serve(s, "GET", target, ""); rec.Code != 200 {
			t.Errorf("GET %s: %d %s", target, rec.Code, rec.Body)
		}
	}
}
