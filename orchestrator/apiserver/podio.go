package apiserver

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// SetPodIO sets what serves logs and exec. Until it is called (or with
// nil) those answer 503. It may be called while the server serves.
func (s *Server) SetPodIO(p api.PodIO) {
	if p == nil {
		s.podIO.Store(nil)
		return
	}
	s.podIO.Store(&p)
}

func (s *Server) getPodIO() api.PodIO {
	if p := s.podIO.Load(); p != nil {
		return *p
	}
	return nil
}

// podIOError maps a PodIO error to its answer.
func podIOError(err error) error {
	switch {
	case errors.Is(err, api.ErrNoContainer):
		return &apiError{status: http.StatusNotFound, code: api.CodeNotFound, msg: err.Error()}
	case errors.Is(err, api.ErrChooseContainer):
		return invalid("container", "%s", err.Error())
	case errors.Is(err, api.ErrNotRunning):
		return conflict("%s", err.Error())
	case errors.Is(err, api.ErrOtherNode):
		return &apiError{status: http.StatusServiceUnavailable, code: api.CodeUnavailable, msg: err.Error()}
	}
	return err
}

// podForIO reads the pod of the request and the PodIO that serves it.
func (s *Server) podForIO(w http.ResponseWriter, r *http.Request) (*api.Pod, api.PodIO, bool) {
	var p api.Pod
	if err := s.st.Get(api.KindPod, r.PathValue("name"), &p); err != nil {
		s.writeError(w, r, err)
		return nil, nil, false
	}
	io := s.getPodIO()
	if io == nil {
		writeJSON(w, http.StatusServiceUnavailable, errBody(api.CodeUnavailable, "no agent on this node"))
		return nil, nil, false
	}
	if p.Spec.Node == "" {
		s.writeError(w, r, conflict("pod %s is not bound to a node yet", p.Name))
		return nil, nil, false
	}
	return &p, io, true
}

// checkContainerParam refuses a container name that no pod can have before
// it reaches the node, where the runtime makes a file name of it.
func checkContainerParam(c string) error {
	if c != "" && !configs.ValidName(c) {
		return invalid("container", "%q is not a valid container name", trimmed(c))
	}
	return nil
}

// podLogs streams a container's log: ?container=&follow=1&tail=N.
func (s *Server) podLogs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	tail := -1
	if v := q.Get("tail"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			s.writeError(w, r, invalid("tail", "tail %q: want a number >= 0", v))
			return
		}
		if n > 0 {
			tail = n
		}
	}
	follow, err := boolParam(r, "follow")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := checkContainerParam(q.Get("container")); err != nil {
		s.writeError(w, r, err)
		return
	}
	pod, pio, ok := s.podForIO(w, r)
	if !ok {
		return
	}
	if follow {
		// A follow lasts until the client goes (the AfterFunc below
		// closes the log when the request's context ends); a plain read
		// ends with the log and needs no slot.
		release, lerr := s.follows.acquire(identityOf(r.Context()))
		if lerr != nil {
			s.writeError(w, r, lerr)
			return
		}
		defer release()
	}
	rc, err := pio.Logs(r.Context(), pod, q.Get("container"), tail, follow)
	if err != nil {
		s.writeError(w, r, podIOError(err))
		return
	}
	defer rc.Close()
	stop := context.AfterFunc(r.Context(), func() { rc.Close() })
	defer stop()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	fw := &flushWriter{w: w, rc: http.NewResponseController(w)}
	_, _ = io.Copy(fw, rc)
}

// podExec runs a command in a container; the output streams back and the
// exit code follows in the Skiff-Exit-Code trailer.
func (s *Server) podExec(w http.ResponseWriter, r *http.Request) {
	var req api.ExecRequest
	if err := s.decode(w, r, &req, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	if len(req.Command) == 0 || strings.TrimSpace(req.Command[0]) == "" {
		s.writeError(w, r, invalid("command", "command: must not be empty"))
		return
	}
	if err := checkContainerParam(req.Container); err != nil {
		s.writeError(w, r, err)
		return
	}
	pod, pio, ok := s.podForIO(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Trailer", api.ExecExitHeader)
	fw := &flushWriter{w: w, rc: http.NewResponseController(w), lazy: true}
	code, err := pio.Exec(r.Context(), pod, req.Container, req.Command, fw)
	if err != nil {
		if !fw.wrote {
			w.Header().Del("Trailer")
			s.writeError(w, r, podIOError(err))
			return
		}
		s.log.Warn("exec failed after output", "pod", pod.Name, "err", err)
		code = -1
	}
	if !fw.wrote {
		w.WriteHeader(http.StatusOK)
	}
	w.Header().Set(api.ExecExitHeader, strconv.Itoa(code))
}

// flushWriter flushes after every write so that output streams.
type flushWriter struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	lazy  bool // the status is written with the first byte
	wrote bool
}

func (f *flushWriter) Write(p []byte) (int, error) {
	if !f.wrote {
		f.wrote = true
		if f.lazy {
			f.w.WriteHeader(http.StatusOK)
		}
	}
	n, err := f.w.Write(p)
	if err == nil {
		err = f.rc.Flush()
	}
	return n, err
}

// postEvent records an event about an object (agents report what they did
// or saw); repeats aggregate (see store.Tx.RecordEvent).
func (s *Server) postEvent(w http.ResponseWriter, r *http.Request) {
	var ev api.Event
	if err := s.decode(w, r, &ev, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := validateEvent(&ev); err != nil {
		s.writeError(w, r, err)
		return
	}
	_, err := s.st.Update(func(tx *store.Tx) error {
		return tx.RecordEvent(ev.Object, ev.Type, ev.Reason, ev.Message, ev.Source)
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
