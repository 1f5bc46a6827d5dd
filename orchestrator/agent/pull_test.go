package agent

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

// pullResult is what one pull call did.
type pullResult string

const (
	pulled     pullResult = "pulled"      // tried, and the image is there
	failed     pullResult = "failed"      // tried, and the registry failed
	backingOff pullResult = "backing off" // not tried: the back-off runs
)

// pullStep advances the fake clock, sets the world, then pulls ref.
type pullStep struct {
	after time.Duration
	ref   string // default "a"
	// up says the registry serves ref from this step on; down says it
	// stops; gc removes ref from the node first.
	up, down, gc bool
	want         pullResult
}

// failingFor returns the steps of a registry that keeps failing: a try
// that fails, then for each back-off d, a pull just before d (still
// backing off) and one at d (tried, failed again).
func failingFor(delays ...time.Duration) []pullStep {
	steps := []pullStep{{want: failed}}
	for _, d := range delays {
		steps = append(steps, pullStep{after: d - time.Millisecond, want: backingOff}, pullStep{after: time.Millisecond, want: failed})
	}
	return steps
}

// TestPullBackoff drives one pod worker's image pulls against a fake
// registry and a fake clock: failing pulls are retried after 5s, doubling
// up to 5 minutes; a pull that works resets the back-off; each image
// backs off on its own. Needs no root.
func TestPullBackoff(t *testing.T) {
	s := time.Second
	tests := []struct {
		name  string
		steps []pullStep
	}{
		{
			name:  "grows to the cap",
			steps: failingFor(5*s, 10*s, 20*s, 40*s, 80*s, 160*s, 300*s, 300*s),
		},
		{
			name: "a success resets it",
			steps: append(failingFor(5*s, 10*s),
				// The registry is back, but the third back-off (20s) runs.
				pullStep{after: 20*s - time.Millisecond, up: true, want: backingOff},
				pullStep{after: time.Millisecond, want: pulled},
				pullStep{after: s, want: pulled}, // the image is there: no try, no wait
				// The image is removed and the registry is down again: the
				// next failure waits 5s again, not 40s.
				pullStep{after: s, gc: true, down: true, want: failed},
				pullStep{after: 5*s - time.Millisecond, want: backingOff},
				pullStep{after: time.Millisecond, want: failed},
			),
		},
		{
			name: "each image on its own",
			steps: []pullStep{
				{ref: "a", want: failed},                                    // a: next at 5s
				{after: 3 * s, ref: "b", want: failed},                      // b: next at 8s
				{after: 2 * s, ref: "a", want: failed},                      // a: next at 15s
				{ref: "b", want: backingOff},                                // 5s < 8s
				{after: 3 * s, ref: "b", up: true, want: pulled},            // 8s
				{after: 7*s - time.Millisecond, ref: "a", want: backingOff}, // 15s-1ms
				{after: time.Millisecond, ref: "a", want: failed},           // 15s: next at 35s
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			start := now
			w := newWorld("n1")
			ps := w.newPods(func() time.Time { return now }, time.Second)
			wk := newPodWorker(ps, "p", nil)
			for i, st := range tc.steps {
				now = now.Add(st.after)
				ref := st.ref
				if ref == "" {
					ref = "a"
				}
				w.mu.Lock()
				if st.up {
					w.registry[ref] = true
				}
				if st.down {
					w.registry[ref] = false
				}
				if st.gc {
					delete(w.images, ref)
				}
				w.mu.Unlock()
				var got pullResult
				if _, err := w.Get(ref); err == nil {
					got = pulled // ensure does not pull an image that is there
				} else {
					switch err := wk.pull(context.Background(), ref); {
					case err == nil:
						got = pulled
					case errors.Is(err, errRetry):
						got = backingOff
					default:
						got = failed
					}
				}
				if got != st.want {
					t.Fatalf("step %d (t=%s, %s): %s, want %s", i, now.Sub(start), ref, got, st.want)
				}
				if _, err := w.Get(ref); (err == nil) != (got == pulled) {
					t.Fatalf("step %d: image %s present: %v after %s", i, ref, err == nil, got)
				}
			}
		})
	}
}

// TestPullBackoffStatus: while its image cannot be pulled, a pod is
// Pending with ImagePullBackOff and the pull's error, and gets neither a
// network nor a sandbox; once the registry serves the image and the
// back-off has passed, it runs.
func TestPullBackoffStatus(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w := newWorld("n1")
	ps := w.newPods(func() time.Time { return now }, time.Second)
	pod := &api.Pod{Meta: api.Meta{Name: "web-1"}, Spec: api.PodSpec{Node: "n1", Restart: configs.RestartAlways,
		Containers: map[string]*configs.ContainerSpec{"app": {Image: "img:1"}}}}
	w.put(pod)
	wk := newPodWorker(ps, pod.Name, w.object(pod.Name))

	for i, after := range []time.Duration{0, time.Second} {
		now = now.Add(after)
		if _, err := wk.sync(ctx); !errors.Is(err, errRetry) {
			t.Fatalf("sync %d: %v, want a retry", i, err)
		}
		st := w.object(pod.Name).Status
		if st.Phase != api.PodPending || st.Reason != ReasonImagePullBackOff || st.Ready ||
			len(st.Containers) != 1 || st.Containers[0].Reason != ReasonImagePullBackOff || st.Containers[0].Message == "" {
			t.Fatalf("sync %d: status %+v, want Pending with ImagePullBackOff and the error", i, st)
		}
		if ips, _ := (fakeNet{w}).Pods(); len(ips) != 0 || len((fakeRuntime{w}).Pods()) != 0 {
			t.Fatalf("sync %d: a pod without its image got an IP (%v) or a sandbox", i, ips)
		}
	}
	w.mu.Lock()
	w.registry["img:1"] = true
	w.mu.Unlock()
	now = now.Add(4 * time.Second) // the first back-off (5s) has passed
	if _, err := wk.sync(ctx); err != nil {
		t.Fatalf("sync after the registry came back: %v", err)
	}
	if st := w.object(pod.Name).Status; st.Phase != api.PodRunning || !st.Ready || st.IP == "" {
		t.Fatalf("status %+v, want Running and ready with an IP", st)
	}
}
