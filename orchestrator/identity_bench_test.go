package orchestrator_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

// benchRun numbers the node names of BenchmarkJoin across its runs.
var benchRun atomic.Int64

// BenchmarkJoin measures a node's join against a real `skiff server
// --listen-tcp`, as `skiff agent` does it on a fresh node: a new ECDSA key
// and CSR, a new TLS connection pinned by the join token, POST /v1/join
// (the server signs the certificate and records its serial in the store,
// fsynced), and the identity checked against the CA.
//
//	go test ./orchestrator -run '^$' -bench BenchmarkJoin -count 6
func BenchmarkJoin(b *testing.B) {
	s := startServer(b, serverOpts{tcp: true})
	tok := s.joinToken()
	run := benchRun.Add(1)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		i++
		c, err := client.NewWithConfig(client.Config{Addr: "https://" + s.tcpAddr, Token: tok.Secret, TLS: pki.ClientTLSConfig(tok)})
		if err != nil {
			b.Fatal(err)
		}
		name := fmt.Sprintf("bench-%d-%d", run, i)
		key, err := pki.NewNodeKey()
		if err != nil {
			b.Fatal(err)
		}
		csr, err := pki.NewNodeCSR(key, name)
		if err != nil {
			b.Fatal(err)
		}
		resp, err := c.Join(ctx, api.JoinRequest{Node: name, CSR: string(csr)})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := pki.NewIdentity(key, []byte(resp.Certificate), []byte(resp.CA)); err != nil {
			b.Fatal(err)
		}
		c.CloseIdleConnections()
	}
}
