package orchestrator

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// How the server reaches a node's agent (podio_proxy.go, images_proxy.go).
//
// The address is the node's own word (status.api_addr), so the server
// dials it only when its host is one of the addresses the node registered
// for itself (status.addresses, which its routes and gossip use too): a
// node cannot send the server to a host it does not claim to be, such as
// the server's own loopback or another LAN host. The TLS config accepts
// only that node's certificate. When the dial or the exchange fails, the
// caller (a reader of logs or images, say) learns only that the node is
// unreachable, never the raw network error (refused, no route, timeout:
// a map of the server's network); the server logs it. A refusal of the
// node's certificate is the server's own decision and is said.

// agentAddr returns where node n's agent serves: its status.api_addr, if
// the host is an IP among n's status.addresses.
func agentAddr(n *api.Node) (string, error) {
	a := n.Status.APIAddr
	if a == "" {
		return "", fmt.Errorf("node %s: its agent registered no address", n.Name)
	}
	host, _, err := net.SplitHostPort(a)
	ip := net.ParseIP(host)
	if err != nil || ip == nil {
		return "", fmt.Errorf("node %s: its agent address %q is not an IP:port; refused", n.Name, a)
	}
	for _, s := range n.Status.Addresses {
		if ip.Equal(net.ParseIP(s)) {
			return a, nil
		}
	}
	return "", fmt.Errorf("node %s: its agent address %q is not on one of the node's own addresses (%s); refused",
		n.Name, a, strings.Join(n.Status.Addresses, ", "))
}

// certRefused is an error of the server's own check of a node's
// certificate in the handshake (podIOClientTLS): said to the caller,
// unlike a network error.
type certRefused struct{ error }

func (e certRefused) Unwrap() error { return e.error }

// unreachable turns a failed exchange with node's agent at addr into the
// error the caller sees (wrapping sentinel): the certificate refusal if
// that was it, else only "node X unreachable", with the cause logged.
func unreachable(log *slog.Logger, node, addr string, err, sentinel error) error {
	var cr certRefused
	if errors.As(err, &cr) {
		return fmt.Errorf("node %s: %v: %w", node, cr.error, sentinel)
	}
	if log == nil {
		log = slog.Default()
	}
	log.Warn("node's agent unreachable", "node", node, "addr", addr, "err", err)
	return fmt.Errorf("node %s unreachable: %w", node, sentinel)
}

// agentClient returns a client for one call to node's agent: its TLS
// config accepts only node's certificate. header bounds the wait for an
// answer's header (0: the request's context only).
func agentClient(st *store.Store, p *pki.PKI, node string, header time.Duration) *http.Client {
	tr := &http.Transport{Proxy: nil, TLSClientConfig: podIOClientTLS(st, p, node),
		TLSHandshakeTimeout: podIODialTimeout, ResponseHeaderTimeout: header, DisableKeepAlives: true}
	tr.DialContext = (&net.Dialer{Timeout: podIODialTimeout}).DialContext
	return &http.Client{Transport: tr}
}
