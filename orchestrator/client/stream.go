package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// ErrWatchClosed ends a watch the server closed; watch again from the last
// revision seen.
var ErrWatchClosed = errors.New("watch closed by the server")

// Watch streams the changes of kind from revision since on (0: from now).
// Events arrive in revision order on the first channel, which is closed when
// the stream ends; the second channel then receives the reason and is
// closed: ctx's error, ErrWatchClosed, or an API error (IsGone: list again
// and watch from the list's revision).
func (c *Client) Watch(ctx context.Context, kind string, since int64) (<-chan api.WatchEvent, <-chan error) {
	return c.WatchQuery(ctx, kind, since, nil)
}

// WatchQuery is Watch with list parameters (pods: app, node).
func (c *Client) WatchQuery(ctx context.Context, kind string, since int64, q url.Values) (<-chan api.WatchEvent, <-chan error) {
	events := make(chan api.WatchEvent)
	errc := make(chan error, 1)
	qq := url.Values{"watch": {"1"}}
	if since > 0 {
		qq.Set("since", strconv.FormatInt(since, 10))
	}
	for k, v := range q {
		qq[k] = v
	}
	go func() {
		defer close(errc)
		err := c.watch(ctx, kind, qq, events)
		close(events)
		errc <- err
	}()
	return events, errc
}

func (c *Client) watch(ctx context.Context, kind string, q url.Values, events chan<- api.WatchEvent) error {
	resp, cancel, err := c.send(ctx, request{method: http.MethodGet, path: "/v1/" + kind, query: q, stream: true})
	if err != nil {
		return err
	}
	defer cancel()
	defer resp.Body.Close()
	// Closing the body unblocks the scanner when ctx ends.
	stop := context.AfterFunc(ctx, func() { resp.Body.Close() })
	defer stop()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		var ev api.WatchEvent
		if err := json.Unmarshal(line, &ev); err != nil {
			return fmt.Errorf("watch %s: decode event: %w", kind, err)
		}
		if ev.Kind == "" {
			ev.Kind = kind
		}
		select {
		case events <- ev:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("watch %s: %w", kind, err)
	}
	return ErrWatchClosed
}

// LogOptions selects what Logs returns.
type LogOptions struct {
	// Container is needed when the pod has more than one.
	Container string
	// Follow keeps the stream open for new lines.
	Follow bool
	// Tail is the number of last lines to start with; 0 means all.
	Tail int
}

// Logs streams a pod container's log. The caller closes the reader;
// cancelling ctx ends a followed stream.
func (c *Client) Logs(ctx context.Context, pod string, o LogOptions) (io.ReadCloser, error) {
	q := url.Values{}
	if o.Container != "" {
		q.Set("container", o.Container)
	}
	if o.Follow {
		q.Set("follow", "1")
	}
	if o.Tail > 0 {
		q.Set("tail", strconv.Itoa(o.Tail))
	}
	resp, cancel, err := c.send(ctx, request{method: http.MethodGet, path: objPath(api.KindPod, pod) + "/logs", query: q, stream: true})
	if err != nil {
		return nil, err
	}
	return &cancelBody{ReadCloser: resp.Body, cancel: cancel}, nil
}

type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// Exec runs a command in a pod's container and copies its output (stdout
// and stderr, interleaved) to out. It returns the command's exit code.
func (c *Client) Exec(ctx context.Context, pod string, r api.ExecRequest, out io.Writer) (int, error) {
	if len(r.Command) == 0 {
		return 0, errors.New("exec: no command")
	}
	resp, cancel, err := c.send(ctx, request{method: http.MethodPost, path: objPath(api.KindPod, pod) + "/exec", body: r, stream: true})
	if err != nil {
		return 0, err
	}
	defer cancel()
	defer resp.Body.Close()
	if _, err := io.Copy(out, resp.Body); err != nil {
		return 0, fmt.Errorf("exec: read output: %w", err)
	}
	v := resp.Trailer.Get(api.ExecExitHeader)
	if v == "" {
		v = resp.Header.Get(api.ExecExitHeader)
	}
	if v == "" {
		return 0, nil
	}
	code, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("exec: bad exit code %q", v)
	}
	return code, nil
}
