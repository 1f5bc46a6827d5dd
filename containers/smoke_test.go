package containers

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/containers/images"
)

func TestPullRunLogs(t *testing.T) {
	requireRoot(t)
	reg := startRegistry(t)
	cfg := testConfig(t)
	r := openRuntime(t, cfg)
	ctx := context.Background()
	var events []images.Progress
	img, err := r.Images().Ensure(ctx, reg.Addr+"/busybox:1", func(p images.Progress) { events = append(events, p) })
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Layers) != 1 || len(events) == 0 || events[len(events)-1].Phase != "done" {
		t.Fatalf("image %+v, progress %+v", img, events)
	}
	if err := r.StartPod(ctx, PodConfig{Name: "p1"}); err != nil {
		t.Fatal(err)
	}
	st, err := r.StartContainer(ctx, "p1", ContainerConfig{Name: "c", Image: reg.Addr + "/busybox:1",
		Command: []string{"sh", "-c", "echo hello $(hostname); echo oops >&2; exit 7"}, Restart: RestartNever})
	if err != nil {
		t.Fatal(err)
	}
	if st.State != StateRunning || st.Pid == 0 {
		t.Fatalf("status %+v", st)
	}
	ev := waitEvent(t, r, "p1", "c", 10*time.Second)
	if ev.Status.ExitCode != 7 || ev.Status.Reason != ReasonError || ev.WillRestart {
		t.Fatalf("event %+v", ev)
	}
	out := readLog(t, r, "p1", "c", LogOptions{Tail: -1})
	if !strings.Contains(out, " stdout F hello p1\n") || !strings.Contains(out, " stderr F oops\n") {
		t.Fatalf("logs %q", out)
	}
}
