package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

// unixServer serves h on a unix socket in a fresh directory and returns a
// client of it.
func unixServer(t *testing.T, h http.Handler) *Client {
	t.Helper()
	dir, err := os.MkdirTemp("", "skiff-client")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "api.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	c, err := New("unix://"+sock, "tok")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func writeErr(w http.ResponseWriter, status int, code, msg string, details ...api.FieldDetail) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(api.ErrorBody{Error: api.ErrorDetail{Code: code, Message: msg, Details: details}})
}

func TestNewAddr(t *testing.T) {
	tests := []struct {
		name, addr, token string
		ok                bool
	}{
		{"unix", "unix:///run/skiff/skiff.sock", "", true},
		{"default", "", "", true},
		{"https", "https://10.0.0.2:7443", "", true},
		{"https with a token", "https://10.0.0.2:7443", "tok", true},
		{"http", "http://127.0.0.1:7443", "", true},
		// A bearer token over plain http is readable by anyone on the path.
		{"http with a token", "http://127.0.0.1:7443", "tok", false},
		{"relative unix", "unix://run/skiff.sock", "", false},
		{"no scheme", "10.0.0.2:7443", "", false},
		{"path", "https://10.0.0.2:7443/v1", "", false},
		{"other scheme", "ftp://x", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.addr, tt.token)
			if (err == nil) != tt.ok {
				t.Fatalf("New(%q) error = %v, want ok=%v", tt.addr, err, tt.ok)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name     string
		handler  http.HandlerFunc
		notFound bool
		conflict bool
		gone     bool
		msg      string
		details  int
	}{
		{"not found", func(w http.ResponseWriter, r *http.Request) {
			writeErr(w, 404, api.CodeNotFound, `app "x" not found`)
		}, true, false, false, `app "x" not found`, 0},
		{"conflict", func(w http.ResponseWriter, r *http.Request) {
			writeErr(w, 409, api.CodeConflict, "stale revision")
		}, false, true, false, "stale revision", 0},
		{"gone", func(w http.ResponseWriter, r *http.Request) {
			writeErr(w, 410, api.CodeGone, "compacted")
		}, false, false, true, "compacted", 0},
		{"invalid with details", func(w http.ResponseWriter, r *http.Request) {
			writeErr(w, 400, api.CodeInvalid, "invalid app", api.FieldDetail{Field: "replicas", Message: "must be >= 0"},
				api.FieldDetail{Field: "container", Message: "at least one"})
		}, false, false, false, "invalid app", 2},
		{"plain text 404", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "404 page not found", 404)
		}, true, false, false, "404 page not found", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := unixServer(t, tt.handler)
			_, err := c.GetApp(context.Background(), "x")
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("error %v (%T) is not an *APIError", err, err)
			}
			if IsNotFound(err) != tt.notFound || IsConflict(err) != tt.conflict || IsGone(err) != tt.gone {
				t.Errorf("IsNotFound/IsConflict/IsGone = %v/%v/%v", IsNotFound(err), IsConflict(err), IsGone(err))
			}
			if ae.Message != tt.msg || len(ae.Details) != tt.details {
				t.Errorf("message %q with %d details, want %q with %d", ae.Message, len(ae.Details), tt.msg, tt.details)
			}
		})
	}
}

func TestUnreachable(t *testing.T) {
	dir := t.TempDir()
	addr := "unix://" + filepath.Join(dir, "none.sock")
	c, err := New(addr, "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ListApps(context.Background())
	var ue *UnreachableError
	if !IsUnreachable(err) || !errors.As(err, &ue) || ue.Addr != addr {
		t.Fatalf("error %v: want an UnreachableError for %s", err, addr)
	}
}

func TestListAndApply(t *testing.T) {
	var gotApply api.ApplyRequest
	var gotAuth, gotQuery string
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/pods", func(w http.ResponseWriter, r *http.Request) {
		gotAuth, gotQuery = r.Header.Get("Authorization"), r.URL.RawQuery
		// The server filters; this one "forgets" to, so the client must.
		fmt.Fprint(w, `{"revision":42,"items":[{"name":"web-1","spec":{"app":"web","node":"n1"}},{"name":"db-1","spec":{"app":"db","node":"n1"}}]}`)
	})
	mux.HandleFunc("GET /v1/nodes", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Skiff-Revision", "7")
		fmt.Fprint(w, `[{"name":"n1"}]`)
	})
	mux.HandleFunc("POST /v1/apply", func(w http.ResponseWriter, r *http.Request) {
		json.NewDecoder(r.Body).Decode(&gotApply)
		fmt.Fprint(w, `{"revision":9,"results":[{"kind":"apps","name":"web","action":"created"}]}`)
	})
	c := unixServer(t, mux)
	ctx := context.Background()

	pods, err := c.ListPods(ctx, "web", "n1")
	if err != nil {
		t.Fatal(err)
	}
	if pods.Revision != 42 || len(pods.Items) != 1 || pods.Items[0].Name != "web-1" {
		t.Errorf("ListPods = %+v", pods)
	}
	if gotAuth != "Bearer tok" || gotQuery != "app=web&node=n1" {
		t.Errorf("auth %q query %q", gotAuth, gotQuery)
	}
	nodes, err := c.ListNodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if nodes.Revision != 7 || len(nodes.Items) != 1 {
		t.Errorf("ListNodes = %+v", nodes)
	}

	one := 1
	m := &configs.Manifest{Apps: map[string]*configs.AppSpec{"web": {Replicas: &one,
		Containers: map[string]*configs.ContainerSpec{"http": {Image: "echo:1"}}}}}
	res, err := c.Apply(ctx, m, true)
	if err != nil {
		t.Fatal(err)
	}
	if !gotApply.DryRun || gotApply.Apps["web"] == nil || gotApply.Apps["web"].Containers["http"].Image != "echo:1" {
		t.Errorf("server got %+v", gotApply)
	}
	if res.Revision != 9 || len(res.Results) != 1 || res.Results[0].Action != api.ActionCreated {
		t.Errorf("Apply = %+v", res)
	}
}

func TestWatch(t *testing.T) {
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/apps", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("watch") != "1" {
			t.Errorf("not a watch: %s", r.URL)
		}
		if q.Get("since") == "1" {
			writeErr(w, http.StatusGone, api.CodeGone, "revision 1 is compacted")
			return
		}
		w.WriteHeader(200)
		for i := 11; i <= 12; i++ {
			fmt.Fprintf(w, `{"type":"put","revision":%d,"kind":"apps","object":{"name":"a%d"}}`+"\n", i, i)
		}
		w.(http.Flusher).Flush()
		if q.Get("since") == "10" {
			return // the server ends the stream
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	c := unixServer(t, mux)

	t.Run("server closes", func(t *testing.T) {
		events, errc := c.Watch(context.Background(), api.KindApp, 10)
		var revs []int64
		for ev := range events {
			revs = append(revs, ev.Revision)
		}
		if err := <-errc; !errors.Is(err, ErrWatchClosed) {
			t.Errorf("end %v, want ErrWatchClosed", err)
		}
		if fmt.Sprint(revs) != "[11 12]" {
			t.Errorf("revisions %v", revs)
		}
	})
	t.Run("gone", func(t *testing.T) {
		events, errc := c.Watch(context.Background(), api.KindApp, 1)
		for range events {
			t.Error("event from a gone watch")
		}
		if err := <-errc; !IsGone(err) {
			t.Errorf("end %v, want gone", err)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		events, errc := c.Watch(ctx, api.KindApp, 5)
		n := 0
		for range events {
			n++
			if n == 2 {
				cancel()
			}
		}
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("end %v, want context.Canceled", err)
		}
	})
	close(release)
}

func TestLogsAndExec(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/pods/{name}/logs", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "pod=%s container=%s follow=%s tail=%s\n", r.PathValue("name"),
			r.URL.Query().Get("container"), r.URL.Query().Get("follow"), r.URL.Query().Get("tail"))
	})
	mux.HandleFunc("POST /v1/pods/{name}/exec", func(w http.ResponseWriter, r *http.Request) {
		var req api.ExecRequest
		json.NewDecoder(r.Body).Decode(&req)
		w.Header().Set("Trailer", api.ExecExitHeader)
		fmt.Fprintf(w, "ran %s in %s\n", strings.Join(req.Command, " "), req.Container)
		w.Header().Set(api.ExecExitHeader, "3")
	})
	c := unixServer(t, mux)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	rc, err := c.Logs(ctx, "web-1", LogOptions{Container: "http", Follow: true, Tail: 5})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if got := string(b); got != "pod=web-1 container=http follow=1 tail=5\n" {
		t.Errorf("logs %q", got)
	}

	var out strings.Builder
	code, err := c.Exec(ctx, "web-1", api.ExecRequest{Container: "http", Command: []string{"ls", "/"}}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if code != 3 || out.String() != "ran ls / in http\n" {
		t.Errorf("exec code %d output %q", code, out.String())
	}
}
