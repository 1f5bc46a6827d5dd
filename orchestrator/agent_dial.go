package orchestrator

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
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

// agentIdleTimeout is how long a kept-alive connection to an agent waits
// for its next request.
const agentIdleTimeout = 30 * time.Second

// agentTransports keeps one http.Transport per node, so that calls to a
// node's agent (an image list to every node on each GET /v1/images, logs,
// exec) reuse connections instead of a TLS handshake each. A transport is
// per node, not one for all, because its TLS config accepts only that
// node's certificate, and a connection verified for one node must never
// carry a request for another that registered the same address. It is
// replaced when the node's address or its certificate record changes (a
// deleted node that joined again), so a connection from before a
// revocation is not reused, and dropped once its node is deleted (looked
// for whenever a transport is made, so the map holds no more nodes than
// the store has had since). The zero value is ready to use.
type agentTransports struct {
	mu     sync.Mutex
	byNode map[string]agentTransport // protected by mu
}

type agentTransport struct {
	key string // addr and the certificate record's revision
	tr  *http.Transport
}

// client returns the HTTP client for node's agent at addr. header bounds
// the wait for an answer's header (0: the request's context only); one
// agentTransports is used with one header bound.
func (t *agentTransports) client(st *store.Store, p *pki.PKI, node, addr string, header time.Duration) *http.Client {
	var rec api.NodeCert
	_ = st.Get(api.KindNodeCert, node, &rec) // none: issued by another server, revision 0
	key := addr + " " + strconv.FormatInt(rec.Revision, 10)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byNode == nil {
		t.byNode = map[string]agentTransport{}
	}
	if e, ok := t.byNode[node]; ok {
		if e.key == key {
			return &http.Client{Transport: e.tr}
		}
		e.tr.CloseIdleConnections()
	}
	t.prune(st)
	tr := &http.Transport{Proxy: nil, TLSClientConfig: podIOClientTLS(st, p, node),
		TLSHandshakeTimeout: podIODialTimeout, ResponseHeaderTimeout: header,
		MaxIdleConnsPerHost: 4, IdleConnTimeout: agentIdleTimeout}
	tr.DialContext = (&net.Dialer{Timeout: podIODialTimeout}).DialContext
	t.byNode[node] = agentTransport{key: key, tr: tr}
	return &http.Client{Transport: tr}
}

// prune drops the transports of nodes the store no longer has; t.mu is
// held.
func (t *agentTransports) prune(st *store.Store) {
	for name, e := range t.byNode {
		var n api.Node
		if err := st.Get(api.KindNode, name, &n); errors.Is(err, store.ErrNotFound) {
			e.tr.CloseIdleConnections()
			delete(t.byNode, name)
		}
	}
}
