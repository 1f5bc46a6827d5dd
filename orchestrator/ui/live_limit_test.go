package ui_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/ui"
)

// TestLiveStreamsPerToken: one token cannot take all the console's live
// streams: past its own cap its next page is refused (429 naming the
// token's limit) while another token still gets a stream; a stream that
// closes frees its place.
func TestLiveStreamsPerToken(t *testing.T) {
	const total = 24 // above the per-token cap (16), so that only it can refuse
	p := newInproc(t, func(c *ui.Config) { c.MaxStreams = total })
	read, _ := p.token(api.RoleRead)
	admin, _ := p.token(api.RoleAdmin)
	rb, ab := p.browser(), p.browser()
	rb.login(read)
	ab.login(admin)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	// open opens a live stream and returns its status (200: open, read
	// up to its hello), and a func that closes it.
	open := func(b interface {
		Do(*http.Request) (*http.Response, error)
	}) (int, string, func()) {
		t.Helper()
		sctx, scancel := context.WithCancel(ctx)
		req, _ := http.NewRequestWithContext(sctx, "GET", p.srv.URL+"/ui/live", nil)
		resp, err := b.Do(req)
		if err != nil {
			scancel()
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			scancel()
			return resp.StatusCode, string(body), func() {}
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() && sc.Text() != "event: hello" {
		}
		return resp.StatusCode, "", func() { scancel(); resp.Body.Close() }
	}
	var closers []func()
	t.Cleanup(func() {
		for _, c := range closers {
			c()
		}
	})
	var refused string
	for i := range total {
		code, body, closeIt := open(rb.c)
		closers = append(closers, closeIt)
		if code == http.StatusTooManyRequests {
			refused = body
			if i != 16 {
				t.Fatalf("the read token's stream %d refused (%s), want the 17th", i+1, body)
			}
			break
		}
		if code != http.StatusOK {
			t.Fatalf("stream %d: %d %s", i+1, code, body)
		}
	}
	if !strings.Contains(refused, "for this token") {
		t.Fatalf("the read token opened more than 16 streams (refusal %q)", refused)
	}
	if code, body, closeIt := open(ab.c); code != http.StatusOK {
		t.Fatalf("admin's stream while the read token holds its cap: %d %s", code, body)
	} else {
		closeIt()
	}
	// One of the read token's streams closes: it may open one again
	// (polled: the server notices the close when the stream's context ends).
	closers[0]()
	for {
		code, body, closeIt := open(rb.c)
		closers = append(closers, closeIt)
		if code == http.StatusOK {
			break
		}
		if code != http.StatusTooManyRequests {
			t.Fatalf("after a close: %d %s", code, body)
		}
		if ctx.Err() != nil {
			t.Fatal("the closed stream's place never came back")
		}
		time.Sleep(10 * time.Millisecond) // poll
	}
}
