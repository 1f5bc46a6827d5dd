package store

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// RecordEvent records an event about object ("kind/name", e.g.
// "pods/web-1") in this transaction. Repeats of the same event (same object,
// type, reason, message and source) are aggregated into one Event whose
// Count grows and whose Time is the latest occurrence.
func (tx *Tx) RecordEvent(object, typ, reason, msg, source string) error {
	name := eventName(object, typ, reason, msg, source)
	var ev api.Event
	err := tx.Get(api.KindEvent, name, &ev)
	switch {
	case err == nil:
		ev.Count++
		ev.Time = tx.Now()
		ev.Revision = 0
		return tx.Put(api.KindEvent, &ev)
	case errors.Is(err, ErrNotFound):
		ev = api.Event{
			Meta:   api.Meta{Name: name},
			Object: object, Type: typ, Reason: reason, Message: msg, Source: source,
			Time: tx.Now(), Count: 1,
		}
		return tx.Create(api.KindEvent, &ev)
	default:
		return err
	}
}

// eventName is the stable name under which repeats of one event aggregate:
// the object, then a hash of what happened.
func eventName(object, typ, reason, msg, source string) string {
	h := fnv.New64a()
	for _, s := range []string{object, typ, reason, msg, source} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return fmt.Sprintf("%s.%016x", strings.ReplaceAll(object, "/", "."), h.Sum64())
}

// PruneEvents deletes events last seen before now-maxAge, in one Update, and
// returns how many went.
func (s *Store) PruneEvents(maxAge time.Duration) (int, error) {
	n := 0
	_, err := s.Update(func(tx *Tx) error {
		n = 0
		var evs []*api.Event
		if err := tx.List(api.KindEvent, &evs); err != nil {
			return err
		}
		cutoff := tx.Now().Add(-maxAge)
		for _, ev := range evs {
			if ev.Time.Before(cutoff) {
				if err := tx.Delete(api.KindEvent, ev.Name, 0); err != nil {
					return err
				}
				n++
			}
		}
		return nil
	})
	return n, err
}
