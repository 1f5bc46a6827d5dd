package agent

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestServePullImageIfMissing: the pull route with if_missing (the
// server's pre-pull before an update) answers from the node's store when
// the image is there, without asking the registry, and pulls it when it is
// not; a pull the registry refuses is an error naming the image.
func TestServePullImageIfMissing(t *testing.T) {
	w := newWorld("n1")
	w.images["reg/web:1"] = true // on the node; the registry is down
	a := &Agent{log: slog.New(slog.NewTextHandler(io.Discard, nil)), pods: w.newPods(time.Now, time.Second)}
	post := func(body string) (int, string) {
		rec := httptest.NewRecorder()
		a.servePullImage(rec, httptest.NewRequest(http.MethodPost, "/images/pull", strings.NewReader(body)))
		return rec.Code, rec.Body.String()
	}
	if code, body := post(`{"ref":"reg/web:1","if_missing":true}`); code != http.StatusOK || !strings.Contains(body, `"refs":["reg/web:1"]`) {
		t.Fatalf("present image: %d %s", code, body)
	}
	if code, body := post(`{"ref":"reg/web:2","if_missing":true}`); code != http.StatusBadGateway || !strings.Contains(body, "pull reg/web:2: registry: connection refused") {
		t.Fatalf("missing image, registry down: %d %s", code, body)
	}
	w.mu.Lock()
	w.registry["reg/web:2"] = true
	w.mu.Unlock()
	if code, body := post(`{"ref":"reg/web:2","if_missing":true}`); code != http.StatusOK || !w.images["reg/web:2"] {
		t.Fatalf("missing image, registry up: %d %s", code, body)
	}
	if code, _ := post(`{"if_missing":true}`); code != http.StatusBadRequest {
		t.Fatalf("no ref: %d", code)
	}
}
