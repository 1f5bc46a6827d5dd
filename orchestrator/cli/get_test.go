package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

// fakeAPI serves h on a unix socket and returns a client of it.
func fakeAPI(t *testing.T, h http.Handler) *client.Client {
	t.Helper()
	dir, err := os.MkdirTemp("", "skiff-cli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	l, err := net.Listen("unix", filepath.Join(dir, "api.sock"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	c, err := client.New("unix://"+filepath.Join(dir, "api.sock"), "")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// lines is an io.Writer that hands each line written to a channel.
type lines struct {
	mu  sync.Mutex
	buf string
	ch  chan string
}

func newLines() *lines { return &lines{ch: make(chan string, 100)} }

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf += string(p)
	for {
		i := strings.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.ch <- l.buf[:i]
		l.buf = l.buf[i+1:]
	}
}

func (l *lines) next(t *testing.T) string {
	t.Helper()
	select {
	case s := <-l.ch:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no line within 10s")
	}
	return ""
}

func podJSON(name string, rev int64) string {
	return fmt.Sprintf(`{"name":%q,"revision":%d,"spec":{"app":"web","template_hash":"h1"},"status":{"phase":"Pending"}}`, name, rev)
}

// TestGetWatchGone: a watch from a compacted revision (410) lists again,
// prints what changed since, and watches on from the new list's revision.
func TestGetWatchGone(t *testing.T) {
	var mu sync.Mutex
	lists := 0
	var sinces []string
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/pods", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("watch") == "" {
			mu.Lock()
			lists++
			n := lists
			mu.Unlock()
			if n == 1 {
				fmt.Fprintf(w, `{"revision":5,"items":[%s]}`, podJSON("web-a", 3))
			} else {
				fmt.Fprintf(w, `{"revision":9,"items":[%s,%s]}`, podJSON("web-a", 3), podJSON("web-b", 8))
			}
			return
		}
		mu.Lock()
		sinces = append(sinces, q.Get("since"))
		mu.Unlock()
		if q.Get("since") == "5" {
			w.WriteHeader(http.StatusGone)
			json.NewEncoder(w).Encode(api.ErrorBody{Error: api.ErrorDetail{Code: api.CodeGone, Message: "compacted"}})
			return
		}
		fmt.Fprintf(w, `{"type":"delete","revision":10,"kind":"pods","object":%s}`+"\n", podJSON("web-a", 3))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	c := fakeAPI(t, mux)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := newLines()
	done := make(chan error, 1)
	go func() { done <- Get(ctx, c, out, GetOptions{Kind: api.KindPod, Watch: true}) }()

	want := []struct{ name, phase string }{{"NAME", "PHASE"}, {"web-a", "Pending"}, {"web-b", "Pending"}, {"web-a", "Deleted"}}
	for _, w := range want {
		f := strings.Fields(out.next(t))
		if len(f) < 4 || f[0] != w.name || f[3] != w.phase {
			t.Errorf("row %v, want %s ... %s", f, w.name, w.phase)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Get ended with %v", err)
	}
	if fmt.Sprint(sinces) != "[5 9]" {
		t.Errorf("watched since %v, want [5 9]", sinces)
	}
}

// TestRolloutStatus follows an app's status through its watch until done.
func TestRolloutStatus(t *testing.T) {
	app := func(rev int64, updated, ready, total int) string {
		a := api.App{Meta: api.Meta{Name: "web", Revision: rev},
			Spec:   configs.AppSpec{Replicas: ptr(3)},
			Status: api.AppStatus{Replicas: total, Updated: updated, Ready: ready}}
		a.Status.TemplateHash = api.TemplateHash(&a.Spec)
		b, _ := json.Marshal(a)
		return string(b)
	}
	want := `Waiting for rollout of app/web: 1 out of 3 new replicas have been updated...
Waiting for rollout of app/web: 1 old replicas are pending termination...
Waiting for rollout of app/web: 2 of 3 updated replicas are ready...
app/web successfully rolled out
`
	// Without a timeout nothing else ends the watch: RolloutStatus must
	// close it itself when it returns.
	for _, timeout := range []time.Duration{10 * time.Second, 0} {
		t.Run("timeout "+timeout.String(), func(t *testing.T) {
			watchEnded, testOver := make(chan struct{}), make(chan struct{})
			mux := http.NewServeMux()
			mux.HandleFunc("GET /v1/apps/web", func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprint(w, app(4, 1, 1, 4))
			})
			mux.HandleFunc("GET /v1/apps", func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Query().Get("since") != "4" {
					t.Errorf("watch since %q, want 4", r.URL.Query().Get("since"))
				}
				for i, a := range []string{app(5, 3, 2, 4), app(6, 3, 2, 3), `{"name":"other","revision":7}`, app(8, 3, 3, 3)} {
					fmt.Fprintf(w, `{"type":"put","revision":%d,"kind":"apps","object":%s}`+"\n", 5+i, a)
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					close(watchEnded)
				case <-testOver: // let the server close even if the watch leaked
				}
			})
			c := fakeAPI(t, mux)
			t.Cleanup(func() { close(testOver) }) // runs before fakeAPI's srv.Close
			var b strings.Builder
			if err := RolloutStatus(context.Background(), c, &b, "web", timeout); err != nil {
				t.Fatal(err)
			}
			if b.String() != want {
				t.Errorf("got\n%s\nwant\n%s", b.String(), want)
			}
			select {
			case <-watchEnded:
			case <-time.After(10 * time.Second):
				t.Fatal("the watch stayed open after RolloutStatus returned")
			}
		})
	}
}
