package agent

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

// eventRecorder sends one event to the server. Satisfied by
// *client.Client.
type eventRecorder interface {
	RecordEvent(ctx context.Context, ev *api.Event) error
}

var _ eventRecorder = (*client.Client)(nil)

// eventQueue carries the pod workers' and probers' events to the server
// without ever blocking them.
type eventQueue struct {
	source string // "agent/<node>"
	log    *slog.Logger
	c      chan api.Event
}

func newEventQueue(node string, log *slog.Logger) *eventQueue {
	return &eventQueue{source: "agent/" + node, log: log, c: make(chan api.Event, 512)}
}

// add queues an event about a pod; it never blocks (events are dropped
// when the queue is full).
func (q *eventQueue) add(pod, typ, reason, msg string) {
	ev := api.Event{Object: api.KindPod + "/" + pod, Type: typ, Reason: reason, Message: msg, Source: q.source}
	select {
	case q.c <- ev:
	default:
		q.log.Debug("event queue full: dropping event", "pod", pod, "reason", reason)
	}
}

// addNode queues an event about this node (object nodes/<node>); it never
// blocks.
func (q *eventQueue) addNode(typ, reason, msg string) {
	ev := api.Event{Object: api.KindNode + "/" + strings.TrimPrefix(q.source, "agent/"), Type: typ, Reason: reason, Message: msg, Source: q.source}
	select {
	case q.c <- ev:
	default:
		q.log.Debug("event queue full: dropping event", "reason", reason)
	}
}

// run sends queued events with rec until ctx ends.
func (q *eventQueue) run(ctx context.Context, rec eventRecorder) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-q.c:
			ectx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := rec.RecordEvent(ectx, &ev); err != nil && ctx.Err() == nil {
				q.log.Debug("record event", "object", ev.Object, "reason", ev.Reason, "err", err)
			}
			cancel()
		}
	}
}
