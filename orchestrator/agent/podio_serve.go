package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

// PodIOHandler serves this node's pods' logs and exec to a server, which
// proxies `skiff logs` and `skiff exec` of pods on this node (the API's
// routes have already checked the caller's rights; the listener admits
// only a server's certificate, see pki.AgentPodIOTLS):
//
//	GET  /pods/{name}/logs?container=&tail=N&follow=1   the plain log lines
//	POST /pods/{name}/exec  api.ExecRequest             output, then the
//	                                                    Skiff-Exit-Code trailer
//	POST /images/pull  {"ref": REF}                      the image pulled
//	GET  /images                                         this node's images
//
// The pod is this agent's own view of it: a pod it does not run is a 404,
// whatever the caller says. Errors are the API's error bodies.
func (a *Agent) PodIOHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /pods/{name}/logs", a.serveLogs)
	mux.HandleFunc("POST /pods/{name}/exec", a.serveExec)
	mux.HandleFunc("POST /images/pull", a.servePullImage) // images_serve.go
	mux.HandleFunc("GET /images", a.serveListImages)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		podIOError(w, http.StatusNotFound, api.CodeNotFound, "no such path: "+r.URL.Path)
	})
	return mux
}

// ownPod returns the pod of the path as this agent runs it, or nil.
func (a *Agent) ownPod(r *http.Request) *api.Pod {
	name := r.PathValue("name")
	a.mu.Lock()
	ps := a.pods
	a.mu.Unlock()
	if !configs.ValidName(name) || ps == nil {
		return nil
	}
	w := ps.worker(name)
	if w == nil {
		return nil
	}
	return w.latest()
}

func (a *Agent) serveLogs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	tail := -1
	if v := q.Get("tail"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			podIOError(w, http.StatusBadRequest, api.CodeInvalid, fmt.Sprintf("tail %q: want a number >= 0", v))
			return
		}
		if n > 0 {
			tail = n
		}
	}
	p := a.ownPod(r)
	if p == nil {
		podIOError(w, http.StatusNotFound, api.CodeNotFound, fmt.Sprintf("pod %s does not run on node %s", r.PathValue("name"), a.name))
		return
	}
	rc, err := a.Logs(r.Context(), p, q.Get("container"), tail, q.Get("follow") == "1")
	if err != nil {
		podIOFailed(w, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = io.Copy(flushing{w}, rc)
}

func (a *Agent) serveExec(w http.ResponseWriter, r *http.Request) {
	var req api.ExecRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil || len(req.Command) == 0 {
		podIOError(w, http.StatusBadRequest, api.CodeInvalid, "want an exec request with a command")
		return
	}
	p := a.ownPod(r)
	if p == nil {
		podIOError(w, http.StatusNotFound, api.CodeNotFound, fmt.Sprintf("pod %s does not run on node %s", r.PathValue("name"), a.name))
		return
	}
	w.Header().Set("Trailer", api.ExecExitHeader)
	out := &lazyFlushing{w: w}
	code, err := a.Exec(r.Context(), p, req.Container, req.Command, out)
	if err != nil && !out.wrote {
		w.Header().Del("Trailer")
		podIOFailed(w, err)
		return
	}
	if err != nil {
		code = -1
	}
	if !out.wrote {
		w.WriteHeader(http.StatusOK)
	}
	w.Header().Set(api.ExecExitHeader, strconv.Itoa(code))
}

// podIOFailed answers a PodIO error with the status the API gives it.
func podIOFailed(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, api.ErrNoContainer):
		podIOError(w, http.StatusNotFound, api.CodeNotFound, err.Error())
	case errors.Is(err, api.ErrChooseContainer):
		podIOError(w, http.StatusBadRequest, api.CodeInvalid, err.Error())
	case errors.Is(err, api.ErrNotRunning):
		podIOError(w, http.StatusConflict, api.CodeConflict, err.Error())
	default:
		podIOError(w, http.StatusInternalServerError, api.CodeInternal, err.Error())
	}
}

func podIOError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// flushing flushes after every write, so that a followed log streams.
type flushing struct{ w http.ResponseWriter }

func (f flushing) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = http.NewResponseController(f.w).Flush()
	}
	return n, err
}

// lazyFlushing writes the 200 with the first byte of output and flushes
// after every write.
type lazyFlushing struct {
	w     http.ResponseWriter
	wrote bool
}

func (l *lazyFlushing) Write(p []byte) (int, error) {
	if !l.wrote {
		l.wrote = true
		l.w.WriteHeader(http.StatusOK)
	}
	return flushing{l.w}.Write(p)
}
