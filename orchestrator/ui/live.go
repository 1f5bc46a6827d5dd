package ui

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// hub runs one watch of the store for every open page and tells each
// page's stream which kinds changed. A subscriber's channel holds one
// pending set of kinds: a slow browser gets the changes merged, never a
// growing queue.
//
// Streams are bounded in all (max) and per token (perToken): the holder
// of one token (a read token, say) cannot open every stream and leave the
// others' pages without live updates.
type hub struct {
	st       *store.Store
	max      int
	perToken int

	mu      sync.Mutex // protects subs and byToken
	subs    map[*sub]struct{}
	byToken map[string]int // open streams per token (user.Who)
}

// sub is one open stream.
type sub struct {
	token  string        // whose stream (user.Who), for the per-token count
	ch     chan struct{} // capacity 1: "kinds has news"
	mu     sync.Mutex    // protects kinds
	kinds  map[string]bool
	tokens bool // a token changed: re-check the session
}

// maxStreamsPerToken bounds the live streams of one token: one per open
// console page (tab), so a person with a dozen tabs open fits.
const maxStreamsPerToken = 16

func newHub(st *store.Store, max int) *hub {
	return &hub{st: st, max: max, perToken: maxStreamsPerToken, subs: map[*sub]struct{}{}, byToken: map[string]int{}}
}

var (
	errTooManyStreams         = errors.New("too many open console pages")
	errTooManyStreamsPerToken = fmt.Errorf("too many open console pages for this token (at most %d); close some", maxStreamsPerToken)
)

// subscribe opens a stream for token (user.Who), or fails when token has
// perToken streams open or all max are open.
func (h *hub) subscribe(token string) (*sub, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.byToken[token] >= h.perToken {
		return nil, errTooManyStreamsPerToken
	}
	if len(h.subs) >= h.max {
		return nil, errTooManyStreams
	}
	s := &sub{token: token, ch: make(chan struct{}, 1), kinds: map[string]bool{}}
	h.subs[s] = struct{}{}
	h.byToken[token]++
	return s, nil
}

// unsubscribe closes s; call it once per subscribe.
func (h *hub) unsubscribe(s *sub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; !ok {
		return
	}
	delete(h.subs, s)
	if h.byToken[s.token]--; h.byToken[s.token] <= 0 {
		delete(h.byToken, s.token) // tokens come and go: keep the map small
	}
}

// take returns the kinds changed since the last take.
func (s *sub) take() (kinds []string, tokens bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.kinds {
		kinds = append(kinds, k)
	}
	clear(s.kinds)
	tokens, s.tokens = s.tokens, false
	return kinds, tokens
}

// liveKinds are the kinds the pages show.
var liveKinds = map[string]bool{api.KindNode: true, api.KindApp: true, api.KindPod: true,
	api.KindService: true, api.KindEndpoints: true, api.KindEvent: true, api.KindToken: true}

func (h *hub) publish(kind string) {
	if !liveKinds[kind] {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		s.mu.Lock()
		if kind == api.KindToken {
			s.tokens = true
		} else {
			s.kinds[kind] = true
		}
		s.mu.Unlock()
		select {
		case s.ch <- struct{}{}:
		default:
		}
	}
}

// run watches every kind from the current revision until ctx ends,
// watching again after a compaction or a store hiccup.
func (h *hub) run(ctx context.Context, log *slog.Logger) {
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(ctx)
		ch, err := h.st.Watch(wctx, "", h.st.Rev())
		if err != nil {
			cancel()
			log.Warn("watch the store", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		for ev := range ch {
			h.publish(ev.Kind)
		}
		cancel()
		// The watch ended (compacted past us or the store closed): the
		// pages may have missed something, so every one refreshes.
		h.publish(api.KindEvent)
	}
}

// live streams "change" events (data: the kinds that changed) to an open
// page, which then fetches its live part again. A token change re-checks
// the session: a revoked token ends the stream with a "signout" event.
func (c *Console) live(w http.ResponseWriter, r *http.Request, u *user) {
	s, err := c.hub.subscribe(u.Who())
	if err != nil {
		http.Error(w, err.Error(), http.StatusTooManyRequests)
		return
	}
	defer c.hub.unsubscribe(s)
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprintf(w, "retry: 2000\nevent: hello\ndata: %d\n\n", c.st.Rev()); err != nil {
		return
	}
	if rc.Flush() != nil {
		return
	}
	keepalive := time.NewTicker(25 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-keepalive.C:
			if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil || rc.Flush() != nil {
				return
			}
			continue
		case <-s.ch:
		}
		kinds, tokens := s.take()
		if tokens {
			if nu, _ := c.user(r); nu == nil {
				fmt.Fprint(w, "event: signout\ndata: revoked\n\n")
				_ = rc.Flush()
				return
			}
		}
		if len(kinds) == 0 {
			continue
		}
		if _, err := fmt.Fprintf(w, "event: change\ndata: %s\n\n", strings.Join(kinds, " ")); err != nil || rc.Flush() != nil {
			return
		}
	}
}

// maxSSELine bounds the part of a log line the console holds before it
// sends it on. The log comes from the pod's node (its agent, through the
// server), and a node that sends a line with no end must not make the
// server buffer it whole: a longer line goes out in pieces.
const maxSSELine = 64 << 10

// maxSSEError bounds the error body kept for the final "error" event.
const maxSSEError = 64 << 10

// sseLines turns a log stream written by the API into server-sent events,
// one per line ("data: <line>"); JSON errors of the API (a status other
// than 200) become one "error" event with the API's message.
type sseLines struct {
	w      http.ResponseWriter
	rc     *http.ResponseController
	header http.Header
	status int
	part   []byte
	errBuf []byte
}

func (s *sseLines) Header() http.Header { return s.header }

func (s *sseLines) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
}

func (s *sseLines) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	if s.status != http.StatusOK {
		if room := maxSSEError - len(s.errBuf); room > 0 {
			s.errBuf = append(s.errBuf, p[:min(len(p), room)]...)
		}
		return len(p), nil
	}
	s.part = append(s.part, p...)
	start := 0
	for {
		i := bytes.IndexByte(s.part[start:], '\n')
		if i < 0 {
			break
		}
		if err := writeSSE(s.w, "", s.part[start:start+i]); err != nil {
			return 0, err
		}
		start += i + 1
	}
	for len(s.part)-start >= maxSSELine {
		if err := writeSSE(s.w, "", s.part[start:start+maxSSELine]); err != nil {
			return 0, err
		}
		start += maxSSELine
	}
	s.part = append(s.part[:0], s.part[start:]...)
	return len(p), s.rc.Flush()
}

func (s *sseLines) Flush() {}

// finish sends what is left: a last partial line or the API's error.
func (s *sseLines) finish() {
	if s.status != 0 && s.status != http.StatusOK {
		var body api.ErrorBody
		msg := strings.TrimSpace(string(s.errBuf))
		if json.Unmarshal(s.errBuf, &body) == nil && body.Error.Message != "" {
			msg = body.Error.Message
		}
		_ = writeSSE(s.w, "error", []byte(strings.Join(strings.Fields(msg), " ")))
	} else if len(s.part) > 0 {
		_ = writeSSE(s.w, "", s.part)
	}
	_ = s.rc.Flush()
}

// writeSSE writes one server-sent event (of type event, if not empty)
// whose data is line. A browser ends a field at a CR as at an LF, so a
// CR or LF inside line would let the pod's output add fields of its own
// ("event: error", "id:", "retry:"): every piece between them goes out as
// a data line of the same event instead (the browser joins them with a
// newline). A trailing CR (CRLF line ends) is dropped.
func writeSSE(w io.Writer, event string, line []byte) error {
	line = bytes.TrimRight(line, "\r")
	var b bytes.Buffer
	if event != "" {
		b.WriteString("event: " + event + "\n")
	}
	for {
		i := bytes.IndexAny(line, "\r\n")
		if i < 0 {
			break
		}
		b.WriteString("data: ")
		b.Write(line[:i])
		b.WriteByte('\n')
		line = line[i+1:]
	}
	b.WriteString("data: ")
	b.Write(line)
	b.WriteString("\n\n")
	_, err := w.Write(b.Bytes())
	return err
}
