package orchestrator

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// podIORouter serves the API's logs and exec (api.PodIO) for pods on any
// node: those of the server's own node through its agent in the process,
// the others through their node's agent, which the server dials at the
// status.api_addr the node registered (see listenPodIO), over TLS with its
// serving certificate, accepting only that node's certificate.
type podIORouter struct {
	st        *store.Store
	pki       *pki.PKI
	localNode string
	local     api.PodIO    // nil without --agent
	log       *slog.Logger // nil: slog.Default()
	// agents are the kept-alive connections to the nodes' agents, with
	// a 30 s bound on an answer's header.
	agents agentTransports
}

var _ api.PodIO = (*podIORouter)(nil)

// podIODialTimeout bounds the connection to a node's agent; a followed log
// then runs as long as the client stays.
const podIODialTimeout = 5 * time.Second

// podIOHeaderTimeout bounds the wait for the answer's header of a log or
// an exec call.
const podIOHeaderTimeout = 30 * time.Second

// Logs streams a container's log from the pod's node.
func (r *podIORouter) Logs(ctx context.Context, p *api.Pod, container string, tail int, follow bool) (io.ReadCloser, error) {
	if r.local != nil && p.Spec.Node == r.localNode {
		return r.local.Logs(ctx, p, container, tail, follow)
	}
	q := url.Values{}
	if container != "" {
		q.Set("container", container)
	}
	if tail >= 0 {
		q.Set("tail", strconv.Itoa(tail))
	}
	if follow {
		q.Set("follow", "1")
	}
	resp, err := r.call(ctx, p, http.MethodGet, "/logs?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Exec runs cmd in a container on the pod's node and copies its output to
// out.
func (r *podIORouter) Exec(ctx context.Context, p *api.Pod, container string, cmd []string, out io.Writer) (int, error) {
	if r.local != nil && p.Spec.Node == r.localNode {
		return r.local.Exec(ctx, p, container, cmd, out)
	}
	body, err := json.Marshal(api.ExecRequest{Container: container, Command: cmd})
	if err != nil {
		return 0, err
	}
	resp, err := r.call(ctx, p, http.MethodPost, "/exec", body)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(out, resp.Body); err != nil {
		return 0, fmt.Errorf("exec on node %s: %w", p.Spec.Node, err)
	}
	code, err := strconv.Atoi(resp.Trailer.Get(api.ExecExitHeader))
	if err != nil {
		return 0, fmt.Errorf("exec on node %s: no exit code", p.Spec.Node)
	}
	return code, nil
}

// call sends one request about pod p to its node's agent and returns the
// 200 answer; any other answer is turned into the error the API maps to
// the same status.
func (r *podIORouter) call(ctx context.Context, p *api.Pod, method, suffix string, body []byte) (*http.Response, error) {
	node := p.Spec.Node
	var n api.Node
	if err := r.st.Get(api.KindNode, node, &n); err != nil {
		return nil, fmt.Errorf("node %s of pod %s: %v: %w", node, p.Name, err, api.ErrOtherNode)
	}
	addr, err := agentAddr(&n)
	if err != nil {
		return nil, fmt.Errorf("no logs or exec: %v: %w", err, api.ErrOtherNode)
	}
	u := "https://" + addr + "/pods/" + url.PathEscape(p.Name) + suffix
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	// The node's own transport: its TLS config accepts only node's
	// certificate (see agentTransports).
	resp, err := r.agents.client(r.st, r.pki, node, addr, podIOHeaderTimeout).Do(req)
	if err != nil {
		return nil, unreachable(r.log, node, addr, err, api.ErrOtherNode)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	var eb struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&eb)
	msg := eb.Error.Message
	if msg == "" {
		msg = resp.Status
	}
	switch resp.StatusCode {
	case http.StatusNotFound:
		return nil, fmt.Errorf("node %s: %s: %w", node, msg, api.ErrNoContainer)
	case http.StatusBadRequest:
		return nil, fmt.Errorf("node %s: %s: %w", node, msg, api.ErrChooseContainer)
	case http.StatusConflict:
		return nil, fmt.Errorf("node %s: %s: %w", node, msg, api.ErrNotRunning)
	}
	return nil, errors.New("node " + node + ": " + msg)
}

// podIOClientTLS is the TLS config the server dials node's agent with
// (pki.PodIOClientTLS: node's own certificate, from the cluster CA), which
// also refuses a certificate the store records as revoked for node. The
// CA's signature and the name are not enough: a deleted node's key keeps
// them until the certificate ends, and a node that joined since under the
// same name must not have its logs, exec and images answered by whoever
// kept the old key and can intercept its traffic.
func podIOClientTLS(st *store.Store, p *pki.PKI, node string) *tls.Config {
	c := p.PodIOClientTLS(node)
	if verify := c.VerifyPeerCertificate; verify != nil {
		c.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
			if err := verify(raw, chains); err != nil {
				return certRefused{err}
			}
			return nil
		}
	}
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if err := verifyNotRevoked(st, node, cs); err != nil {
			return certRefused{err}
		}
		return nil
	}
	return c
}

// verifyNotRevoked refuses the certificate of node's agent if the store
// records it as revoked.
func verifyNotRevoked(st *store.Store, node string, cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("node %s's agent sent no certificate", node)
	}
	serial := pki.SerialHex(cs.PeerCertificates[0])
	var rec api.NodeCert
	switch err := st.Get(api.KindNodeCert, node, &rec); {
	case errors.Is(err, store.ErrNotFound):
		return nil // issued by another server, as for the API (apiserver.authCert)
	case err != nil:
		return fmt.Errorf("node %s's certificate record: %w", node, err)
	}
	if slices.ContainsFunc(rec.Revoked, func(c api.CertSerial) bool { return c.Serial == serial }) {
		return fmt.Errorf("node %s's agent answered with a revoked certificate (serial %s, from before the node was deleted)", node, serial)
	}
	return nil
}
