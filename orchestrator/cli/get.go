package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

// NewObject returns a new zero object of kind.
func NewObject(kind string) (api.Object, error) {
	switch kind {
	case api.KindNode:
		return new(api.Node), nil
	case api.KindApp:
		return new(api.App), nil
	case api.KindPod:
		return new(api.Pod), nil
	case api.KindService:
		return new(api.Service), nil
	case api.KindEndpoints:
		return new(api.Endpoints), nil
	case api.KindEvent:
		return new(api.Event), nil
	case api.KindConfig:
		return new(api.Config), nil
	case api.KindSecret:
		return new(api.Secret), nil
	}
	return nil, fmt.Errorf("unknown kind %q", kind)
}

// DecodeObject decodes the JSON of an object of kind.
func DecodeObject(kind string, raw json.RawMessage) (api.Object, error) {
	o, err := NewObject(kind)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, o); err != nil {
		return nil, fmt.Errorf("decode %s: %w", kind, err)
	}
	return o, nil
}

func ptrs[T any, P interface {
	*T
	api.Object
}](items []T) []api.Object {
	out := make([]api.Object, len(items))
	for i := range items {
		out[i] = P(&items[i])
	}
	return out
}

// ListObjects lists every object of kind and the revision of the list.
func ListObjects(ctx context.Context, c *client.Client, kind string) ([]api.Object, int64, error) {
	switch kind {
	case api.KindNode:
		l, err := c.ListNodes(ctx)
		return ptrs(l.Items), l.Revision, err
	case api.KindApp:
		l, err := c.ListApps(ctx)
		return ptrs(l.Items), l.Revision, err
	case api.KindPod:
		l, err := c.ListPods(ctx, "", "")
		return ptrs(l.Items), l.Revision, err
	case api.KindService:
		l, err := c.ListServices(ctx)
		return ptrs(l.Items), l.Revision, err
	case api.KindEndpoints:
		l, err := c.ListEndpoints(ctx)
		return ptrs(l.Items), l.Revision, err
	case api.KindEvent:
		l, err := c.ListEvents(ctx, "")
		return ptrs(l.Items), l.Revision, err
	case api.KindConfig:
		l, err := c.ListConfigs(ctx)
		return ptrs(l.Items), l.Revision, err
	case api.KindSecret:
		// The server answers names and sizes only; Sealed and Spec are
		// cleared here too, so that nothing but those is ever printed.
		l, err := c.ListSecrets(ctx)
		for i := range l.Items {
			l.Items[i].Sealed, l.Items[i].Spec = nil, configs.FilesSpec{}
		}
		return ptrs(l.Items), l.Revision, err
	}
	return nil, 0, fmt.Errorf("unknown kind %q", kind)
}

// GetOptions are the flags of get.
type GetOptions struct {
	Kind   string // one of Kinds
	Name   string // empty: all
	Format string // FormatTable, FormatWide or FormatJSON
	Watch  bool
}

// matches reports whether o is what a get of name asks for. Events match
// their own name and the object they are about ("pods/web-x2f").
func matches(o api.Object, name string) bool {
	if name == "" || o.GetMeta().Name == name {
		return true
	}
	e, ok := o.(*api.Event)
	return ok && e.Object == name
}

// sortObjects orders events by time and every other kind by name.
func sortObjects(objs []api.Object) {
	slices.SortStableFunc(objs, func(a, b api.Object) int {
		ea, okA := a.(*api.Event)
		eb, okB := b.(*api.Event)
		if okA && okB {
			return cmp.Or(ea.Time.Compare(eb.Time), cmp.Compare(ea.Revision, eb.Revision))
		}
		return cmp.Compare(a.GetMeta().Name, b.GetMeta().Name)
	})
}

// Get prints the objects of o.Kind (just o.Name if set) to w and, with
// o.Watch, then a row per change until ctx ends.
func Get(ctx context.Context, c *client.Client, w io.Writer, o GetOptions) error {
	objs, rev, err := ListObjects(ctx, c, o.Kind)
	if err != nil {
		return err
	}
	kept := objs[:0]
	for _, obj := range objs {
		if matches(obj, o.Name) {
			kept = append(kept, obj)
		}
	}
	objs = kept
	sortObjects(objs)
	if o.Name != "" && len(objs) == 0 && o.Kind != api.KindEvent {
		return &client.APIError{Status: 404, Code: api.CodeNotFound, Message: fmt.Sprintf("%s %q not found", singular[o.Kind], o.Name)}
	}

	t := &Tables{Wide: o.Format == FormatWide, Now: time.Now()}
	if o.Format != FormatJSON {
		if err := related(ctx, c, o.Kind, t); err != nil {
			return err
		}
	}

	var st *StreamTable
	switch {
	case o.Format == FormatJSON && o.Watch:
		// One watch event per line from the start, so the stream is NDJSON.
		for _, obj := range objs {
			if err := writeEvent(w, o.Kind, api.EventPut, obj); err != nil {
				return err
			}
		}
	case o.Format == FormatJSON:
		if o.Name != "" && len(objs) == 1 {
			return WriteJSON(w, objs[0])
		}
		return WriteJSON(w, objs)
	default:
		rows := make([][]string, len(objs))
		for i, obj := range objs {
			rows[i] = t.Row(obj)
		}
		if !o.Watch {
			if len(rows) == 0 {
				_, err := fmt.Fprintf(w, "No %s found.\n", o.Kind)
				return err
			}
			return WriteTable(w, t.Header(o.Kind), rows)
		}
		st = NewStreamTable(w, t.Header(o.Kind), rows)
		if err := st.WriteRow(t.Header(o.Kind)); err != nil {
			return err
		}
		for _, r := range rows {
			if err := st.WriteRow(r); err != nil {
				return err
			}
		}
	}
	return watchRows(ctx, c, w, o, t, st, rev)
}

// related lists what the table of kind needs besides its objects.
func related(ctx context.Context, c *client.Client, kind string, t *Tables) error {
	switch kind {
	case api.KindNode:
		l, err := c.ListPods(ctx, "", "")
		if err != nil {
			return err
		}
		t.Pods = l.Items
	case api.KindService:
		l, err := c.ListEndpoints(ctx)
		if err != nil {
			return err
		}
		t.Endpoints = l.Items
	case api.KindApp:
		// The measured load is a nice-to-have: a server without the stats
		// route still lists its apps (LOAD "-").
		if st, err := c.Stats(ctx); err == nil {
			t.Load = st.Apps
		}
	}
	return nil
}

func writeEvent(w io.Writer, kind, typ string, obj api.Object) error {
	raw, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	b, err := json.Marshal(api.WatchEvent{Type: typ, Revision: obj.GetMeta().Revision, Kind: kind, Object: raw})
	if err != nil {
		return err
	}
	_, err = w.Write(append(escapeJSON(b), '\n'))
	return err
}

// watchRows follows the changes of o.Kind from rev on and prints each
// (a table row, or the watch event as a JSON line when st is nil). When the
// server has compacted past rev (410 gone) it lists again, prints what
// changed since, and watches on from the new list's revision; when the
// server closes the stream it watches again from the last revision seen.
func watchRows(ctx context.Context, c *client.Client, w io.Writer, o GetOptions, t *Tables, st *StreamTable, rev int64) error {
	if !o.Watch {
		return nil
	}
	// Returning from inside a watch (a print or decode error) must end
	// that watch too, not leave it open until the caller's ctx ends.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	print := func(typ string, obj api.Object) error {
		if !matches(obj, o.Name) {
			return nil
		}
		if st == nil {
			return writeEvent(w, o.Kind, typ, obj)
		}
		t.Now = time.Now()
		row := t.Row(obj)
		if typ == api.EventDelete {
			t.markDeleted(o.Kind, row)
		}
		return st.WriteRow(row)
	}
	for {
		events, errc := c.Watch(ctx, o.Kind, rev)
		for ev := range events {
			obj, err := DecodeObject(o.Kind, ev.Object)
			if err != nil {
				return err
			}
			if err := print(ev.Type, obj); err != nil {
				return err
			}
			rev = max(rev, ev.Revision)
		}
		err := <-errc
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, client.ErrWatchClosed):
			continue
		case client.IsGone(err):
			objs, newRev, err := ListObjects(ctx, c, o.Kind)
			if err != nil {
				return err
			}
			sortObjects(objs)
			for _, obj := range objs {
				if obj.GetMeta().Revision > rev {
					if err := print(api.EventPut, obj); err != nil {
						return err
					}
				}
			}
			rev = newRev
		default:
			return err
		}
	}
}

// DecodeInto decodes the JSON of an object into v.
func DecodeInto(raw json.RawMessage, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decode object: %w", err)
	}
	return nil
}
