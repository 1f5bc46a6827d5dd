package containers

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestConcurrentStartsStopsAndStatus(t *testing.T) {
	requireRoot(t)
	r, _, _, ref := podWithBusybox(t, nil)
	ctx := context.Background()
	const pods = 4
	var wg sync.WaitGroup
	// Errors of pods that no removal races with are failures; the others
	// may fail cleanly.
	type podErr struct {
		racing bool
		err    error
	}
	errs := make(chan podErr, 4*pods)
	stop := make(chan struct{})
	go func() { // Status answers while containers start
		for {
			select {
			case <-stop:
				return
			default:
				_ = r.Status()
			}
		}
	}()
	for i := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pod := fmt.Sprintf("cc-%d", i)
			racing := i%2 == 1
			if err := r.StartPod(ctx, PodConfig{Name: pod}); err != nil {
				errs <- podErr{false, fmt.Errorf("start pod %s: %w", pod, err)}
				return
			}
			// Two starts of the same container race: one container.
			var inner sync.WaitGroup
			for range 2 {
				inner.Add(1)
				go func() {
					defer inner.Done()
					if _, err := r.StartContainer(ctx, pod, ContainerConfig{Name: "c", Image: ref, Command: []string{"sleep", "600"}}); err != nil {
						errs <- podErr{racing, fmt.Errorf("start container in %s: %w", pod, err)}
					}
				}()
			}
			// A removal racing with the starts waits for them and removes all.
			if racing {
				if err := r.RemovePod(ctx, pod, time.Second); err != nil {
					errs <- podErr{false, fmt.Errorf("remove pod %s: %w", pod, err)}
				}
			}
			inner.Wait()
		}()
	}
	wg.Wait()
	close(stop)
	close(errs)
	for pe := range errs {
		if pe.racing {
			t.Logf("error: %v", pe.err) // a start that lost the race with RemovePod fails cleanly
		} else {
			t.Error(pe.err)
		}
	}
	eventually(t, 10*time.Second, "one running container per kept pod", func() error {
		running := map[string]int{}
		for _, st := range r.Status() {
			if st.State == StateRunning {
				running[st.Pod]++
			}
		}
		for i := 0; i < pods; i += 2 {
			if running[fmt.Sprintf("cc-%d", i)] != 1 {
				return fmt.Errorf("running per pod: %v", running)
			}
		}
		return nil
	})
	for i := 0; i < pods; i++ {
		if err := r.RemovePod(ctx, fmt.Sprintf("cc-%d", i), time.Second); err != nil {
			t.Error(err)
		}
	}
	if n := len(r.Status()); n != 0 {
		t.Errorf("%d containers left: %+v", n, r.Status())
	}
}
