package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

// watcher streams the watch events of a kind from a revision on; the pod
// and the load-balancer sides each watch their kinds through it.
// Satisfied by *client.Client.
type watcher interface {
	WatchQuery(ctx context.Context, kind string, since int64, q url.Values) (<-chan api.WatchEvent, <-chan error)
}

var _ watcher = (*client.Client)(nil)

// watchItem is one watch event, or (relist set) the full list of a kind
// after a 410.
type watchItem struct {
	kind   string
	ev     api.WatchEvent
	relist []json.RawMessage
}

// relister lists a kind afresh as raw objects, with the list's revision.
type relister func(ctx context.Context) ([]json.RawMessage, int64, error)

// watch streams kind's events into out from since on, resuming from the
// last revision seen after a closed stream and relisting (with list)
// after a 410. It returns when ctx ends.
func watch(ctx context.Context, log *slog.Logger, w watcher, kind string, since int64, q url.Values, list relister, out chan<- watchItem) {
	delay := 100 * time.Millisecond
	for ctx.Err() == nil {
		evs, errc := w.WatchQuery(ctx, kind, since, q)
		got := false
		for ev := range evs {
			got = true
			since = ev.Revision
			select {
			case out <- watchItem{kind: kind, ev: ev}:
			case <-ctx.Done():
				return
			}
		}
		err := <-errc
		if ctx.Err() != nil {
			return
		}
		if client.IsGone(err) {
			log.Info("watch compacted past our revision; listing again", "kind", kind)
			items, rev, lerr := list(ctx)
			if lerr == nil {
				since = rev
				select {
				case out <- watchItem{kind: kind, relist: items}:
				case <-ctx.Done():
					return
				}
				continue
			}
			err = lerr
		}
		if got {
			delay = 100 * time.Millisecond
		}
		if !errors.Is(err, client.ErrWatchClosed) {
			log.Debug("watch ended", "kind", kind, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}

// rawItems encodes the items of a list one by one, as a watch relist
// carries them.
func rawItems[T any](items []T) []json.RawMessage {
	out := make([]json.RawMessage, 0, len(items))
	for i := range items {
		b, _ := json.Marshal(&items[i])
		out = append(out, b)
	}
	return out
}

// retry calls fn until it succeeds or ctx ends, backing off on errors.
func retry[T any](ctx context.Context, fn func() (T, error)) (T, error) {
	delay := 100 * time.Millisecond
	for {
		v, err := fn()
		if err == nil {
			return v, nil
		}
		select {
		case <-ctx.Done():
			return v, fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}
