package apiserver

import (
	"context"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

// BenchmarkAPIAuth compares the latency of one API request over TLS (keep-
// alive connections, so the handshake is not counted) authenticated by a
// node's client certificate and by a bearer token of `skiff token create`.
// Both look their credential up in the store on every request (the
// certificate's revocation record, the token's hash and expiry).
//
//	go test ./orchestrator/apiserver -run '^$' -bench BenchmarkAPIAuth -count 6
func BenchmarkAPIAuth(b *testing.B) {
	e := newTLSEnv(b, time.Hour)
	node, _ := e.node("edge-01")
	if _, err := node.PutNode(context.Background(), &api.Node{Meta: api.Meta{Name: "edge-01"}}); err != nil {
		b.Fatal(err)
	}
	read := e.client(e.token(api.RoleRead, ""))
	for _, bc := range []struct {
		name string
		c    *client.Client
	}{
		{"bearer", read},
		{"client-cert", node},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			if _, err := bc.c.GetNode(ctx, "edge-01"); err != nil { // open the connection
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, err := bc.c.GetNode(ctx, "edge-01"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
