package apiserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// fakeIO models a node's pods: one pod "p1" with container "c", whose log
// is three lines and whose exec echoes its command and exits with len(cmd).
type fakeIO struct{}

func (fakeIO) Logs(_ context.Context, p *api.Pod, c string, tail int, follow bool) (io.ReadCloser, error) {
	if c != "" && c != "c" {
		return nil, fmt.Errorf("container %s: %w", c, api.ErrNoContainer)
	}
	lines := []string{"one\n", "two\n", "three\n"}
	if tail >= 0 && tail < len(lines) {
		lines = lines[len(lines)-tail:]
	}
	return io.NopCloser(strings.NewReader(strings.Join(lines, ""))), nil
}

func (fakeIO) Exec(_ context.Context, p *api.Pod, c string, cmd []string, out io.Writer) (int, error) {
	if cmd[0] == "stopped" {
		return 0, api.ErrNotRunning
	}
	fmt.Fprintln(out, strings.Join(cmd, " "))
	return len(cmd), nil
}

func TestPodIO(t *testing.T) {
	s, st := newTestServer(t, "10.96.0.0/16")
	_, err := st.Update(func(tx *store.Tx) error {
		return tx.Put(api.KindPod, &api.Pod{Meta: api.Meta{Name: "p1"}, Spec: api.PodSpec{App: "a", Node: "n1"}})
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	defer hs.Close()
	c, err := client.New(hs.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	if _, err := c.Logs(ctx, "p1", client.LogOptions{}); !isStatus(err, 503) {
		t.Errorf("logs without a PodIO: %v, want 503", err)
	}
	s.SetPodIO(fakeIO{})

	tests := []struct {
		name string
		opts client.LogOptions
		want string
		code int
	}{
		{"all", client.LogOptions{}, "one\ntwo\nthree\n", 0},
		{"tail", client.LogOptions{Tail: 2}, "two\nthree\n", 0},
		{"unknown container", client.LogOptions{Container: "x"}, "", 404},
	}
	for _, tc := range tests {
		t.Run("logs "+tc.name, func(t *testing.T) {
			rc, err := c.Logs(ctx, "p1", tc.opts)
			if tc.code != 0 {
				if !isStatus(err, tc.code) {
					t.Errorf("err %v, want %d", err, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			b, _ := io.ReadAll(rc)
			if string(b) != tc.want {
				t.Errorf("got %q, want %q", b, tc.want)
			}
		})
	}
	t.Run("exec", func(t *testing.T) {
		var out bytes.Buffer
		code, err := c.Exec(ctx, "p1", api.ExecRequest{Command: []string{"echo", "hi", "there"}}, &out)
		if err != nil || code != 3 || out.String() != "echo hi there\n" {
			t.Errorf("exec: code %d err %v out %q", code, err, out.String())
		}
		if _, err := c.Exec(ctx, "p1", api.ExecRequest{Command: []string{"stopped"}}, &out); !isStatus(err, 409) {
			t.Errorf("exec in a stopped container: %v, want 409", err)
		}
		if _, err := c.Exec(ctx, "nope", api.ExecRequest{Command: []string{"x"}}, &out); !client.IsNotFound(err) {
			t.Errorf("exec in a missing pod: %v, want 404", err)
		}
	})
	t.Run("events", func(t *testing.T) {
		ev := &api.Event{Object: "pods/p1", Type: api.EventNormal, Reason: "Pulled", Message: "pulled x in 0.1s", Source: "agent/n1"}
		for range 2 {
			if err := c.RecordEvent(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		l, err := c.ListEvents(ctx, "pods/p1")
		if err != nil || len(l.Items) != 1 || l.Items[0].Count != 2 {
			t.Errorf("events %+v %v: want one with count 2", l.Items, err)
		}
		if err := c.RecordEvent(ctx, &api.Event{Object: "p1", Type: api.EventNormal, Reason: "x"}); !isStatus(err, 400) {
			t.Errorf("bad event: %v, want 400", err)
		}
	})
}

func isStatus(err error, code int) bool {
	var e *client.APIError
	return errors.As(err, &e) && e.Status == code
}

// TestFilteredWatchFlushes: a pod for the watched node followed, in the
// same transaction, by one for another node must reach the watcher at once
// (the filtered-out event last in the backlog used to hold it back).
func TestFilteredWatchFlushes(t *testing.T) {
	s, st := newTestServer(t, "10.96.0.0/16")
	hs := httptest.NewServer(s)
	defer hs.Close()
	c, err := client.New(hs.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	// A first write, so that the watch starts from a revision > 0 (0
	// means "from now", which could miss the writes below).
	rev, err := st.Update(func(tx *store.Tx) error {
		return tx.Put(api.KindPod, &api.Pod{Meta: api.Meta{Name: "p0"}, Spec: api.PodSpec{App: "x", Node: "z"}})
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	evs, _ := c.WatchQuery(ctx, api.KindPod, rev, map[string][]string{"node": {"a"}})
	_, err = st.Update(func(tx *store.Tx) error {
		if err := tx.Put(api.KindPod, &api.Pod{Meta: api.Meta{Name: "pa"}, Spec: api.PodSpec{App: "x", Node: "a"}}); err != nil {
			return err
		}
		return tx.Put(api.KindPod, &api.Pod{Meta: api.Meta{Name: "pb"}, Spec: api.PodSpec{App: "x", Node: "b"}})
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-evs:
		if !strings.Contains(string(ev.Object), `"pa"`) {
			t.Errorf("got %s, want pod pa", ev.Object)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the watcher of node a got nothing in 3s")
	}
}
