package ui

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func newSSELines() (*sseLines, *httptest.ResponseRecorder) {
	rec := httptest.NewRecorder()
	return &sseLines{w: rec, rc: http.NewResponseController(rec), header: http.Header{}}, rec
}

// A pod's log line with a CR in it must not add SSE fields of its own: a
// browser ends a field at a CR, so "\revent: error\rdata: x" would turn the
// line into an error event that stops the follow and shows the pod's text.
func TestSSELinesCarriageReturn(t *testing.T) {
	s, rec := newSSELines()
	if _, err := s.Write([]byte("ok\revent: error\rid: 7\r\ndone\r\n")); err != nil {
		t.Fatal(err)
	}
	s.finish()
	got := rec.Body.String()
	if strings.Contains(got, "\r") {
		t.Fatalf("a CR reached the event stream: %q", got)
	}
	want := "data: ok\ndata: event: error\ndata: id: 7\n\ndata: done\n\n"
	if got != want {
		t.Fatalf("stream\n%q\nwant\n%q", got, want)
	}
	for _, l := range strings.Split(got, "\n") {
		if l != "" && !strings.HasPrefix(l, "data: ") {
			t.Fatalf("a field other than data: %q in %q", l, got)
		}
	}

	// The API's error message (it may carry a node's text) likewise.
	s, rec = newSSELines()
	s.WriteHeader(http.StatusInternalServerError)
	_, _ = s.Write([]byte(`{"error":{"code":"internal","message":"boom\revent: x\rdata: y"}}`))
	s.finish()
	if got, want := rec.Body.String(), "event: error\ndata: boom event: x data: y\n\n"; got != want {
		t.Fatalf("error event %q, want %q", got, want)
	}
}

// A line with no end (a node's agent can send one) is sent on in pieces,
// never held whole in the server's memory.
func TestSSELinesBoundedLine(t *testing.T) {
	s, rec := newSSELines()
	chunk := bytes.Repeat([]byte("x"), 4<<10)
	for range 256 { // 1 MiB without a newline
		if _, err := s.Write(chunk); err != nil {
			t.Fatal(err)
		}
		if len(s.part) > maxSSELine {
			t.Fatalf("holding %d bytes of one line, want at most %d", len(s.part), maxSSELine)
		}
	}
	s.finish()
	if n := strings.Count(rec.Body.String(), "x"); n != 256*len(chunk) {
		t.Fatalf("sent %d bytes of the line, want %d", n, 256*len(chunk))
	}

	// The error body kept for the final event is bounded too.
	s, _ = newSSELines()
	s.WriteHeader(http.StatusBadGateway)
	for range 256 {
		_, _ = s.Write(chunk)
	}
	if len(s.errBuf) > maxSSEError {
		t.Fatalf("holding %d bytes of an error body, want at most %d", len(s.errBuf), maxSSEError)
	}
}
