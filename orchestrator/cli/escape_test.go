package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

func TestEscape(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "web-7d9c-a", "web-7d9c-a"},
		{"unicode", "café ✓", "café ✓"},
		{"backslash stays", `C:\dir`, `C:\dir`},
		{"clear screen", "\x1b[2J", `\x1b[2J`},
		{"carriage return", "ok\rgotcha", `ok\rgotcha`},
		{"newline and tab", "a\nb\tc", `a\nb\tc`},
		{"bell and del", "\a\x7f", `\x07\x7f`},
		{"c1 csi", "\u009b2J", `\u009b2J`},
		{"bidi override", "a\u202eb", `a\u202eb`},
		{"line separator", "a\u2028b", `a\u2028b`},
		{"invalid utf-8", "a\x9bb", `a\x9bb`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Escape(tc.in)
			if got != tc.want {
				t.Errorf("Escape(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if again := Escape(got); again != got {
				t.Errorf("Escape is not idempotent: %q then %q", got, again)
			}
		})
	}
}

// hostile is what a malicious node might write into an event or a status:
// clear the screen, go back to the start of the line and overwrite it,
// set the window title.
const hostile = "\x1b[2J\rall good\x1b]0;pwned\x07"

// assertInert fails if out holds a control character other than the
// newlines that end its lines.
func assertInert(t *testing.T, out string) {
	t.Helper()
	if i := strings.IndexFunc(out, func(r rune) bool { return r != '\n' && needsEscape(r) }); i >= 0 {
		t.Fatalf("raw control %q at byte %d of output:\n%q", out[i], i, out)
	}
	if !strings.Contains(out, `\x1b[2J\rall good\x1b]0;pwned\x07`) {
		t.Fatalf("output lacks the escaped text:\n%s", out)
	}
}

func TestTableEscapes(t *testing.T) {
	ev := &api.Event{Meta: api.Meta{Name: "e1" + hostile}, Object: "pods/p1", Type: "Warning", Reason: "BackOff", Message: hostile}
	tb := &Tables{Now: time.Now()}
	t.Run("table", func(t *testing.T) {
		var b bytes.Buffer
		if err := WriteTable(&b, tb.Header(api.KindEvent), [][]string{tb.Row(ev)}); err != nil {
			t.Fatal(err)
		}
		assertInert(t, b.String())
	})
	t.Run("stream table", func(t *testing.T) {
		var b bytes.Buffer
		st := NewStreamTable(&b, tb.Header(api.KindEvent), nil)
		if err := st.WriteRow(tb.Row(ev)); err != nil {
			t.Fatal(err)
		}
		assertInert(t, b.String())
	})
	t.Run("json", func(t *testing.T) {
		var b bytes.Buffer
		ev := *ev
		ev.Message += "\u009b\u202e"
		if err := WriteJSON(&b, &ev); err != nil {
			t.Fatal(err)
		}
		if i := strings.IndexFunc(b.String(), func(r rune) bool { return r >= 0x7f && needsEscape(r) || r == 0x1b }); i >= 0 {
			t.Fatalf("raw control at byte %d of %q", i, b.String())
		}
		var back api.Event
		if err := json.Unmarshal(b.Bytes(), &back); err != nil || back.Message != ev.Message {
			t.Fatalf("JSON no longer decodes to the same message: %q, %v", back.Message, err)
		}
	})
}

func TestDescribeEscapes(t *testing.T) {
	pod := api.Pod{Meta: api.Meta{Name: "p1"}, Spec: api.PodSpec{App: "web", Node: "n1"},
		Status: api.PodStatus{Reason: "Crash", Message: hostile}}
	evs := api.List[api.Event]{Revision: 3, Items: []api.Event{{Meta: api.Meta{Name: "e1"}, Object: "pods/p1",
		Type: "Warning", Reason: "BackOff", Message: hostile, Source: "agent/n1", Time: time.Now()}}}
	c := fakeAPI(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/pods/p1":
			json.NewEncoder(w).Encode(pod) //nolint:errcheck
		case "/v1/events":
			json.NewEncoder(w).Encode(evs) //nolint:errcheck
		default:
			http.NotFound(w, r)
		}
	}))
	var b bytes.Buffer
	if err := Describe(context.Background(), c, &b, api.KindPod, "p1"); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	assertInert(t, out)
	if n := strings.Count(out, `\x1b[2J`); n != 2 {
		t.Errorf("escaped text %d times, want 2 (the pod's message, the event's):\n%s", n, out)
	}
}

func TestPrintErrorEscapes(t *testing.T) {
	var b bytes.Buffer
	PrintError(&b, errors.Join(&client.APIError{Status: 400, Code: api.CodeInvalid, Message: hostile,
		Details: []api.FieldDetail{{Field: "f", Message: "other " + hostile}}}))
	assertInert(t, b.String())
}
