package clustertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// This file is the harness of the HA tests (issue 12): a cluster of several
// `skiff server --listen-tcp` processes (the first starts the raft cluster,
// the others join it with `--server FIRST:7443` and a token of role server
// from token_file), witnesses (`--witness`), spare servers started later,
// and agents, each in its own netns as in harness_test.go; fault injection
// (kill -9, restart, partitions by iptables DROP inside the namespaces,
// link down); and raw API calls on a server's unix socket that tell a
// definite refusal (not_leader) from an outcome that may or may not have
// applied.

// HAOptions shape an HA cluster.
type HAOptions struct {
	// Servers is how many real servers start (default 3).
	Servers int
	// Witnesses is how many witness servers start after them.
	Witnesses int
	// Spares are servers that are prepared but not started: AddServer
	// starts one.
	Spares int
	// Agents is how many agents start last.
	Agents int
	// NoStart leaves everything stopped.
	NoStart bool
	// LogLevel of the servers (default debug; the benchmarks use warn).
	LogLevel string
}

// HA is a cluster of several servers. Node indices: servers, then
// witnesses, then spares, then agents.
type HA struct {
	*Cluster
	o       HAOptions
	servers []int // every server node, spares included
	witness map[int]bool
	agents  []int

	tokMu       sync.Mutex
	serverToken string

	partMu sync.Mutex
	parted map[int]bool // nodes with DROP rules in their netns
}

// NewHA makes the namespaces and configs of an HA cluster and, unless
// o.NoStart, starts the servers (the first, then each joiner once the
// previous one has joined), then the agents, and waits until every agent
// is Ready.
func NewHA(t testing.TB, o HAOptions) *HA {
	t.Helper()
	if o.Servers == 0 {
		o.Servers = 3
	}
	total := o.Servers + o.Witnesses + o.Spares + o.Agents
	c := New(t, Options{Nodes: total, NoStart: true})
	h := &HA{Cluster: c, o: o, witness: map[int]bool{}, parted: map[int]bool{}}
	for i := 0; i < o.Servers+o.Witnesses+o.Spares; i++ {
		h.servers = append(h.servers, i)
		if i >= o.Servers && i < o.Servers+o.Witnesses {
			h.witness[i] = true
		}
	}
	for i := o.Servers + o.Witnesses + o.Spares; i < total; i++ {
		h.agents = append(h.agents, i)
	}
	if !o.NoStart {
		h.StartServer(0)
		for _, i := range h.servers[1 : o.Servers+o.Witnesses] {
			h.StartServer(i)
		}
		for _, i := range h.agents {
			h.StartAgentNode(i)
		}
	}
	return h
}

// ServerNodes lists the server nodes started at some point or ready to be
// (spares included).
func (h *HA) ServerNodes() []int { return h.servers }

// Agents lists the agent nodes.
func (h *HA) Agents() []int { return h.agents }

// IsWitness reports whether node i runs with --witness.
func (h *HA) IsWitness(i int) bool { return h.witness[i] }

// Spare returns the k-th spare server node.
func (h *HA) Spare(k int) int { return h.o.Servers + h.o.Witnesses + k }

// prependConfig puts top-level TOML lines at the head of node i's
// config.toml (before its tables).
func (h *HA) prependConfig(i int, lines string) {
	h.t.Helper()
	n := h.Nodes[i]
	b, err := os.ReadFile(n.Config)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(n.Config, []byte(lines+"\n"+string(b)), 0o600); err != nil {
		h.t.Fatal(err)
	}
}

// ServerToken is a token of role server, made once on the first live
// server (`skiff token create --role server`): the agents' join token
// must not let a box join as a server.
func (h *HA) ServerToken() string {
	h.t.Helper()
	h.tokMu.Lock()
	defer h.tokMu.Unlock()
	if h.serverToken != "" {
		return h.serverToken
	}
	var tok string
	h.WaitFor("a token of role server (skiff token create --role server)", 30*time.Second, func() (bool, error) {
		for _, i := range h.servers {
			if !h.Nodes[i].Running() {
				continue
			}
			out, err := h.CLI(i, "token", "create", "--role", "server", "--description", "clustertest HA")
			if err != nil {
				return false, err
			}
			tok = strings.TrimSpace(out)
			return tok != "", nil
		}
		return false, errors.New("no server runs")
	})
	h.serverToken = tok
	return tok
}

// serverArgsHA are the arguments of server node i: the first server of a
// fresh cluster starts it; any other (or a restart) joins the first live
// server other than itself with the server token in token_file (0600,
// named in its config, never in argv).
func (h *HA) serverArgsHA(i int, join string) []string {
	args := []string{"server", "--listen-tcp", "--config", h.Nodes[i].Config, "--log-level", cmpOr(h.o.LogLevel, "debug")}
	if join != "" {
		args = append(args, "--server", join)
	}
	if h.witness[i] {
		args = append(args, "--witness")
	}
	return args
}

// joinTarget is the API address of a live server other than i, "" if none.
func (h *HA) joinTarget(i int) string {
	for _, j := range h.servers {
		if j != i && h.Nodes[j].Running() {
			return h.Nodes[j].Addr + ":7443"
		}
	}
	return ""
}

// tokenFileMu guards the first write of a node's token file (and the line
// naming it in its config).
var tokenFileMu sync.Mutex

// StartServer starts server node i and waits until it serves its API and
// (if it joined) knows a leader. The first start of a node with no live
// server bootstraps; every other start joins.
func (h *HA) StartServer(i int) {
	h.t.Helper()
	n := h.Nodes[i]
	join := h.joinTarget(i)
	if join != "" {
		file := filepath.Join(n.Dir, "server-token")
		tokenFileMu.Lock()
		if _, err := os.Stat(file); err != nil {
			if err := os.WriteFile(file, []byte(h.ServerToken()+"\n"), 0o600); err != nil {
				tokenFileMu.Unlock()
				h.t.Fatal(err)
			}
			h.prependConfig(i, fmt.Sprintf("token_file = %q", file))
		}
		tokenFileMu.Unlock()
	}
	h.StartProcess(i, h.serverArgsHA(i, join)...)
	h.WaitFor(fmt.Sprintf("server %d (%s) answers on its socket", i, n.Name), 45*time.Second, func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return h.Client(i).Ready(ctx) == nil, nil
	})
	if join != "" || !bin.listenTCPFlag {
		h.WaitKnowsLeader(i, 60*time.Second)
	}
}

// StartAgentNode starts agent node i joined to the first server with the
// agents' join token and waits until a server sees it Ready.
func (h *HA) StartAgentNode(i int) {
	h.t.Helper()
	n := h.Nodes[i]
	args := h.agentArgs(n, h.Token())
	h.StartProcess(i, args...)
	h.WaitAgentReady(i, 60*time.Second)
}

// WaitAgentReady waits until agent node i is Ready in a live server's view.
func (h *HA) WaitAgentReady(i int, timeout time.Duration) {
	h.t.Helper()
	name := h.Nodes[i].Name
	h.WaitFor(fmt.Sprintf("node %d (%s) Ready", i, name), timeout, func() (bool, error) {
		s := h.AnyLiveServer()
		if s < 0 {
			return false, errors.New("no server runs")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		nd, err := h.Client(s).GetNode(ctx, name)
		if err != nil {
			return false, err
		}
		return nd.Ready(), fmt.Errorf("node %s not Ready", name)
	})
}

// AnyLiveServer is a running server node, preferring the leader; -1 if
// none runs.
func (h *HA) AnyLiveServer() int {
	if l := h.Leader(); l >= 0 {
		return l
	}
	for _, i := range h.servers {
		if h.Nodes[i].Running() {
			return i
		}
	}
	return -1
}

// KillServer is kill -9 of node i's skiff.
func (h *HA) KillServer(i int) { h.Kill(i) }

// RestartServer starts a killed server again on its data dir (it joins a
// live server, which a restarted member of the configuration ignores).
func (h *HA) RestartServer(i int) { h.StartServer(i) }

// ---- probing the leader through the API ----

// Probe is what a server says about leadership.
type Probe struct {
	// Status is the HTTP status of a consistent GET of a config that does
	// not exist: 404 from the ready leader, 503 otherwise; 0 when the
	// server did not answer.
	Status int
	// Code is the error code (not_found, not_leader, no_quorum).
	Code string
	// Leader is the Skiff-Leader header of a not_leader answer.
	Leader string
	Err    error
}

// ProbeServer asks server i for a consistent read of a missing config.
func (h *HA) ProbeServer(i int) Probe {
	if !h.Nodes[i].Running() {
		return Probe{Err: errors.New("not running")}
	}
	r := h.Raw(i, http.MethodGet, "/v1/configs/skt-probe?consistent=true", nil, 2*time.Second)
	return Probe{Status: r.Status, Code: r.Code, Leader: r.Header.Get("Skiff-Leader"), Err: r.Err}
}

// Leader is the node whose consistent read succeeds (the ready leader), -1
// if none. Witnesses never count.
func (h *HA) Leader() int {
	for _, i := range h.servers {
		if !h.Nodes[i].Running() {
			continue
		}
		p := h.ProbeServer(i)
		if p.Err == nil && p.Status == http.StatusNotFound && p.Code == api.CodeNotFound {
			return i
		}
	}
	return -1
}

// WaitLeader waits until exactly one ready leader answers among the
// running servers, other than the excluded nodes, and returns it.
func (h *HA) WaitLeader(timeout time.Duration, exclude ...int) int {
	h.t.Helper()
	l := -1
	h.WaitFor("a ready leader", timeout, func() (bool, error) {
		var leaders []int
		for _, i := range h.servers {
			if !h.Nodes[i].Running() {
				continue
			}
			p := h.ProbeServer(i)
			if p.Err == nil && p.Status == http.StatusNotFound {
				leaders = append(leaders, i)
			}
		}
		if len(leaders) != 1 {
			return false, fmt.Errorf("leaders %v", leaders)
		}
		for _, x := range exclude {
			if leaders[0] == x {
				return false, fmt.Errorf("leader is still %d", x)
			}
		}
		l = leaders[0]
		return true, nil
	})
	return l
}

// WaitKnowsLeader waits until server i is the ready leader or names the
// leader in a not_leader answer.
func (h *HA) WaitKnowsLeader(i int, timeout time.Duration) {
	h.t.Helper()
	h.WaitFor(fmt.Sprintf("server %d knows the leader", i), timeout, func() (bool, error) {
		p := h.ProbeServer(i)
		if p.Err != nil {
			return false, p.Err
		}
		if p.Status == http.StatusNotFound {
			return true, nil
		}
		return p.Code == "not_leader" && p.Leader != "", fmt.Errorf("http %d %s leader %q", p.Status, p.Code, p.Leader)
	})
}

// NodeOfAPIAddr maps an API address (HOST:PORT, a Skiff-Leader header) to
// its node index, -1 if none.
func (h *HA) NodeOfAPIAddr(addr string) int {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	for _, n := range h.Nodes {
		if n.Addr == host {
			return n.Index
		}
	}
	return -1
}

// ---- partitions ----

const partChain = "SKT-HA-PART"

// Partition drops every packet between the groups of nodes (iptables DROP
// in each member's netns, both directions, in a chain of the test's own
// that Heal flushes). Nodes in no group are untouched.
func (h *HA) Partition(groups ...[]int) {
	h.t.Helper()
	h.partMu.Lock()
	defer h.partMu.Unlock()
	for gi, g := range groups {
		for _, i := range g {
			if !h.parted[i] {
				for _, args := range [][]string{
					{"-w", "-N", partChain},
					{"-w", "-I", "INPUT", "1", "-j", partChain},
					{"-w", "-I", "OUTPUT", "1", "-j", partChain},
				} {
					if out, err := h.Exec(i, "iptables", args...); err != nil {
						h.t.Fatalf("partition: %v\n%s", err, out)
					}
				}
				h.parted[i] = true
			}
			for gj, other := range groups {
				if gj == gi {
					continue
				}
				for _, j := range other {
					addr := h.Nodes[j].Addr
					for _, args := range [][]string{
						{"-w", "-A", partChain, "-s", addr, "-j", "DROP"},
						{"-w", "-A", partChain, "-d", addr, "-j", "DROP"},
					} {
						if out, err := h.Exec(i, "iptables", args...); err != nil {
							h.t.Fatalf("partition: %v\n%s", err, out)
						}
					}
				}
			}
		}
	}
}

// HealPartitions flushes every DROP rule Partition made.
func (h *HA) HealPartitions() {
	h.t.Helper()
	h.partMu.Lock()
	defer h.partMu.Unlock()
	for i := range h.parted {
		if out, err := h.Exec(i, "iptables", "-w", "-F", partChain); err != nil {
			h.t.Fatalf("heal: %v\n%s", err, out)
		}
	}
}

// ---- raw API calls ----

// RawResult is the outcome of one API call on a server's socket.
type RawResult struct {
	Status int
	Code   string // error code of a JSON error body
	Msg    string
	Header http.Header
	Body   []byte
	// Err is a transport error (Status 0).
	Err error
	// Sent is false when the request certainly never reached the server
	// (the dial failed): it cannot have applied.
	Sent bool
}

var rawClients sync.Map // socket path → *http.Client

func rawClient(sock string) *http.Client {
	if c, ok := rawClients.Load(sock); ok {
		return c.(*http.Client)
	}
	var d net.Dialer
	c := &http.Client{Transport: &http.Transport{
		Proxy: nil,
		// A new connection per call: a reply on a connection the killed
		// server left is never confused with the next call's.
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	v, _ := rawClients.LoadOrStore(sock, c)
	return v.(*http.Client)
}

// Raw does one call on server i's unix socket (no token needed there) with
// a timeout, and never fails the test.
func (h *HA) Raw(i int, method, path string, body any, timeout time.Duration) RawResult {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return RawResult{Err: err}
		}
		rd = strings.NewReader(string(b))
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://skiff"+path, rd)
	if err != nil {
		return RawResult{Err: err}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := rawClient(h.Nodes[i].Socket()).Do(req)
	if err != nil {
		var op *net.OpError
		sent := !(errors.As(err, &op) && op.Op == "dial")
		return RawResult{Err: err, Sent: sent}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	r := RawResult{Status: resp.StatusCode, Header: resp.Header, Body: b, Sent: true}
	if err != nil {
		// The status came, the body did not: the outcome is known only
		// by the status, so treat it as a transport error.
		r.Err = err
		return r
	}
	if resp.StatusCode >= 400 {
		var eb api.ErrorBody
		if json.Unmarshal(b, &eb) == nil {
			r.Code, r.Msg = eb.Error.Code, eb.Error.Message
		}
	}
	return r
}

// FirstServer is node 0 (the server the cluster started on).
func (h *HA) FirstServer() int { return h.servers[0] }

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
