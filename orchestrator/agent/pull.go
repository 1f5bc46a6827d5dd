package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/skiff-edge/skiff/containers/images"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

// imageStore holds the node's images and pulls the missing ones.
// Satisfied by *images.Store.
type imageStore interface {
	Get(ref string) (images.Image, error)
	Ensure(ctx context.Context, ref string, progress func(images.Progress)) (images.Image, error)
}

var _ imageStore = (*images.Store)(nil)

// The image pull back-off: a failed pull of an image waits pullBackoffBase
// before the next try, doubling up to pullBackoffCap; a pull that works
// resets it.
const (
	pullBackoffBase = 5 * time.Second
	pullBackoffCap  = 5 * time.Minute
)

// pull pulls ref unless it is backing off (errRetry then); progress goes
// out as events.
func (w *podWorker) pull(ctx context.Context, ref string) error {
	if w.p.now().Before(w.pullWait[ref]) {
		return errRetry
	}
	w.event(api.EventNormal, "Pulling", "pulling image "+ref)
	start := w.p.now()
	_, err := w.p.images.Ensure(ctx, ref, func(pr images.Progress) {
		if pr.Phase == "done" && pr.Layer != "" {
			w.event(api.EventNormal, "Pulling", fmt.Sprintf("image %s: layer %.19s done (%d bytes)", ref, pr.Layer, pr.Total))
		}
	})
	if err != nil {
		d := min(max(w.pullDelay[ref]*2, pullBackoffBase), pullBackoffCap)
		w.pullDelay[ref], w.pullWait[ref], w.pullErr[ref] = d, w.p.now().Add(d), err.Error()
		w.event(api.EventWarning, "Failed", fmt.Sprintf("pull image %s: %v (retry in %s)", ref, err, d))
		return err
	}
	delete(w.pullDelay, ref)
	delete(w.pullWait, ref)
	delete(w.pullErr, ref)
	w.event(api.EventNormal, "Pulled", fmt.Sprintf("pulled image %s in %.1fs", ref, w.p.now().Sub(start).Seconds()))
	return nil
}
