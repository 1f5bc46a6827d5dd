package client

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// TestFollowsLeaderAndFailsOver: a follower's 503 not_leader is followed
// to the leader in Skiff-Leader (and the client stays there); an
// unreachable server is skipped for the next known one; a no_quorum
// answer is returned as it is.
func TestFollowsLeaderAndFailsOver(t *testing.T) {
	var leaderCalls, followerCalls atomic.Int32
	leader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaderCalls.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer leader.Close()
	leaderHost := strings.TrimPrefix(leader.URL, "http://")
	follower := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		followerCalls.Add(1)
		w.Header().Set(api.LeaderHeader, leaderHost)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"error":{"code":"not_leader","message":"not the leader"}}`))
	}))
	defer follower.Close()
	noQuorum := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"error":{"code":"no_quorum","message":"no leader reachable"}}`))
	}))
	defer noQuorum.Close()
	ctx := context.Background()

	t.Run("follow", func(t *testing.T) {
		c, err := New(follower.URL, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := c.RemoveServer(ctx, "x"); err != nil {
			t.Fatalf("write through a follower: %v", err)
		}
		if leaderCalls.Load() != 1 || followerCalls.Load() != 1 {
			t.Fatalf("calls: leader %d follower %d, want 1 and 1", leaderCalls.Load(), followerCalls.Load())
		}
		if c.Addr() != leader.URL {
			t.Fatalf("client at %s after following, want the leader %s", c.Addr(), leader.URL)
		}
	})

	t.Run("failover", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := ln.Addr().String()
		ln.Close()
		c, err := NewWithConfig(Config{Addr: "http://" + dead, Servers: []string{dead, strings.TrimPrefix(follower.URL, "http://")}})
		if err != nil {
			t.Fatal(err)
		}
		before := leaderCalls.Load()
		if err := c.RemoveServer(ctx, "x"); err != nil {
			t.Fatalf("write with the first server down: %v", err)
		}
		if leaderCalls.Load() != before+1 || c.Addr() != leader.URL {
			t.Fatalf("leader calls %d (want %d), client at %s", leaderCalls.Load(), before+1, c.Addr())
		}
	})

	t.Run("no quorum", func(t *testing.T) {
		c, err := New(noQuorum.URL, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := c.RemoveServer(ctx, "x"); !IsNoQuorum(err) {
			t.Fatalf("err %v, want no_quorum", err)
		}
	})
}
