package client

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestSetAddr: a TCP client moves its requests to another server; a unix
// socket client, another scheme or a malformed address are refused.
func TestSetAddr(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(up.Close)
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close()

	c, err := New(downURL, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Ready(context.Background()); !IsUnreachable(err) {
		t.Fatalf("Ready on a closed server: %v, want unreachable", err)
	}
	if err := c.SetAddr(up.URL); err != nil {
		t.Fatal(err)
	}
	if c.Addr() != up.URL {
		t.Errorf("Addr() = %q after SetAddr(%q)", c.Addr(), up.URL)
	}
	if err := c.Ready(context.Background()); err != nil {
		t.Fatalf("Ready after SetAddr: %v", err)
	}
	for _, bad := range []string{"https://" + strings.TrimPrefix(up.URL, "http://"), "http://h:1/v1", "10.0.0.1:7443"} {
		if err := c.SetAddr(bad); err == nil {
			t.Errorf("SetAddr(%q) accepted", bad)
		}
	}
	u, err := New("unix:///run/skiff/skiff.sock", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := u.SetAddr("http://127.0.0.1:1"); err == nil {
		t.Error("SetAddr on a unix socket client accepted")
	}
}
