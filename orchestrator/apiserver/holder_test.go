package apiserver

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// TestHolderFlipBounded: a node that names itself holder over and over
// (a stolen node flipping the status) changes status.holder at most once
// per HolderMinInterval: the change that comes too soon is a 429 with
// Retry-After and a message naming the bound, and writes nothing; once the
// interval has passed the next change is taken. The first holder of an
// address is taken at once.
func TestHolderFlipBounded(t *testing.T) {
	s, st := lbTestServer(t)
	var mu sync.Mutex
	now := time.Unix(1_000_000, 0)
	g := s.holders
	g.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	if rec := serve(s, "POST", "/v1/apply", `{"services":{"a":{"app":"web","port":80,"type":"load-balancer"}}}`); rec.Code != http.StatusOK {
		t.Fatalf("apply: %d %s", rec.Code, rec.Body)
	}
	if _, err := st.Update(func(tx *store.Tx) error {
		for _, n := range []string{"n1", "n2"} {
			if err := tx.Create(api.KindNode, &api.Node{Meta: api.Meta{Name: n}}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	put := func(holder string) *http.Response {
		rec := serve(s, "PUT", "/v1/services/a/holder", `{"address":"192.0.2.240","holder":"`+holder+`"}`)
		res := rec.Result()
		res.Body = nil
		if rec.Code != http.StatusOK && rec.Code != http.StatusTooManyRequests {
			t.Fatalf("holder %s: %d %s", holder, rec.Code, rec.Body)
		}
		if rec.Code == http.StatusTooManyRequests && !strings.Contains(rec.Body.String(), "bounded to one per 5s") {
			t.Errorf("429 body %s: want it to name the bound", rec.Body)
		}
		return res
	}
	holder := func() string {
		var svc api.Service
		if err := st.Get(api.KindService, "a", &svc); err != nil {
			t.Fatal(err)
		}
		return svc.Status.Holder
	}

	if res := put("n1"); res.StatusCode != http.StatusOK {
		t.Fatalf("first holder: %d, want 200", res.StatusCode)
	}
	// A flip right after: refused, nothing written.
	before := st.Rev()
	res := put("n2")
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") != "5" {
		t.Fatalf("flip at once: %d Retry-After %q, want 429 and 5", res.StatusCode, res.Header.Get("Retry-After"))
	}
	if st.Rev() != before || holder() != "n1" {
		t.Fatalf("refused flip wrote: revision %d -> %d, holder %q", before, st.Rev(), holder())
	}
	// The same holder again is still a 200 without a write.
	if res := put("n1"); res.StatusCode != http.StatusOK || st.Rev() != before {
		t.Fatalf("same holder: %d, revision %d -> %d", res.StatusCode, before, st.Rev())
	}
	// A flood of flips within the interval writes nothing.
	for i := 0; i < 50; i++ {
		advance(50 * time.Millisecond)
		put("n2")
		put("n1")
	}
	if st.Rev() != before {
		t.Fatalf("flips within the interval wrote: revision %d -> %d", before, st.Rev())
	}
	// 2.5 s have passed; at 3.5 s, 1.5 s are left: Retry-After rounds up.
	advance(time.Second)
	if res := put("n2"); res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") != "2" {
		t.Fatalf("flip 3.5 s after: %d Retry-After %q, want 429 and 2", res.StatusCode, res.Header.Get("Retry-After"))
	}
	advance(1500 * time.Millisecond)
	if res := put("n2"); res.StatusCode != http.StatusOK || holder() != "n2" {
		t.Fatalf("flip after the interval: %d, holder %q; want 200 and n2", res.StatusCode, holder())
	}
	if res := put("n1"); res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("flip back at once: %d, want 429", res.StatusCode)
	}
}
