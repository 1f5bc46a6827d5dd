package orchestrator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/skiff-edge/skiff/cluster"
	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/apiserver"
	"github.com/skiff-edge/skiff/orchestrator/client"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// Several servers (docs/ha.md). In cluster mode the store is replicated
// with raft (one voter by default, so another server can join at any
// time); raft rides the API port (ALPN skiff-raft/1, server certificates
// only: cluster.RaftStream). A server started with servers (--server or
// servers = [...]) and no CA joins: with a token of role server it fetches
// the CA cert and key, the join secret, the gossip key and the secret keys
// over the token-pinned TLS connection, then asks the leader to make it a
// voter, presenting its own server certificate.

// RaftDir holds the raft log and snapshots under the data dir.
const RaftDir = "raft"

// defaultServerRemoveAfter is server_remove_after's default.
const defaultServerRemoveAfter = 5 * time.Minute

// prepareRaft, in cluster mode, joins the cluster when this server has no
// CA and knows other servers, loads its PKI (its serving certificate names
// it) and makes raft's stream layer.
func (s *server) prepareRaft() error {
	if !s.sc.TCP {
		return nil
	}
	dir := filepath.Join(s.cfg.DataDir, PKIDir)
	if err := os.MkdirAll(s.cfg.DataDir, 0o700); err != nil {
		return err
	}
	_, err := os.Stat(filepath.Join(dir, pki.CACertFile))
	fresh := errors.Is(err, fs.ErrNotExist)
	s.joining = len(s.cfg.Servers) > 0
	if fresh && s.joining {
		if err := s.joinServers(); err != nil {
			return err
		}
	}
	p, err := pki.LoadServer(dir, s.cfg.NodeName, serverHosts(s.cfg))
	if err != nil {
		return err
	}
	s.pki = p
	s.raftAddr = apiAdvertise(s.cfg, advertiseIP(s.cfg))
	if s.raftAddr == "" {
		return errors.New("cluster mode: no address to advertise for raft: set advertise_addr")
	}
	s.raftStream = cluster.NewRaftStream(p, s.raftAddr, s.logger.With("component", "raft"))
	return nil
}

// advertiseIP is advertise_addr, else api_addr's host, else the address
// of the default route.
func advertiseIP(node configs.NodeConfig) string {
	if node.AdvertiseAddr != "" {
		return node.AdvertiseAddr
	}
	if h, _, err := net.SplitHostPort(node.APIAddr); err == nil && h != "" && h != "0.0.0.0" {
		return h
	}
	if c, err := net.Dial("udp4", "192.0.2.1:9"); err == nil { // no packet is sent
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).IP.String()
	}
	return "127.0.0.1"
}

// joinServers fetches the server material from the first server of
// cfg.Servers that answers, with the token of role server, and installs
// it in <data_dir>.
func (s *server) joinServers() error {
	if s.sc.Token == "" {
		return errors.New("server join: a token of role server is needed (skiff token create --role server on a server; " +
			"give it in token_file, SKIFF_TOKEN or --token-stdin)")
	}
	tok, err := pki.ParseToken(s.sc.Token)
	if err != nil {
		return fmt.Errorf("server join: %w", err)
	}
	var last error
	for attempt := 0; attempt < 30; attempt++ {
		for _, srv := range s.cfg.Servers {
			c, err := client.NewWithConfig(client.Config{Addr: "https://" + srv, Token: tok.Secret, TLS: pki.ClientTLSConfig(tok), Timeout: joinCheckTimeout})
			if err != nil {
				return err
			}
			resp, err := c.JoinServer(s.ctx, api.ServerJoinRequest{Name: s.cfg.NodeName})
			c.CloseIdleConnections()
			var ae *client.APIError
			switch {
			case err == nil:
				return s.installMaterial(resp)
			case errors.Is(err, pki.ErrCAMismatch), errors.Is(err, pki.ErrNoCAInChain):
				return fmt.Errorf("%w: %s: %w", ErrJoinRefused, srv, err)
			case errors.As(err, &ae) && ae.Status/100 == 4:
				return fmt.Errorf("%w: server join at %s: %w (is the token of role server?)", ErrJoinRefused, srv, err)
			}
			last = err
			s.log.Warn("server join: the server does not answer; retrying", "server", srv, "err", err)
		}
		select {
		case <-s.ctx.Done():
			return s.ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
	return fmt.Errorf("server join: no server answered: %w", last)
}

// installMaterial writes what a server join handed over.
func (s *server) installMaterial(resp *api.ServerJoinResponse) error {
	dir := filepath.Join(s.cfg.DataDir, PKIDir)
	if err := pki.InstallServerMaterial(dir, []byte(resp.CA), []byte(resp.CAKey), resp.JoinSecret, resp.GossipKey); err != nil {
		return err
	}
	keys := filepath.Join(s.cfg.DataDir, apiserver.SecretKeyFile)
	if resp.SecretKeys == "" {
		return errors.New("server join: the answer holds no secret keys")
	}
	if err := os.WriteFile(keys, []byte(resp.SecretKeys), 0o600); err != nil {
		return fmt.Errorf("server join: write %s: %w", keys, err)
	}
	s.joinPeers = resp.Cluster.Servers
	s.log.Info("server join: got the cluster's CA, join secret, gossip key and secret keys", "servers", resp.Cluster.Servers)
	return nil
}

// replicaConfig is the raft side of the store.
func (s *server) replicaConfig() store.ReplicaConfig {
	return store.ReplicaConfig{
		ID:        s.cfg.NodeName,
		Addr:      s.raftAddr,
		Dir:       filepath.Join(s.cfg.DataDir, RaftDir),
		Stream:    s.raftStream,
		Bootstrap: !s.joining,
	}
}

// raftNextProto is the API listener's TLSNextProto: raft connections go
// to the stream layer (net/http closes them when this returns, so Handoff
// blocks until raft is done with them).
func (s *server) raftNextProto() map[string]func(*http.Server, *tls.Conn, http.Handler) {
	if s.raftStream == nil {
		return nil
	}
	return map[string]func(*http.Server, *tls.Conn, http.Handler){
		pki.RaftALPN: func(_ *http.Server, c *tls.Conn, _ http.Handler) { s.raftStream.Handoff(c) },
	}
}

// runLeadership runs the controllers (run) while this server is the ready
// leader and stops them at once when it is not; a witness hands its
// leadership away instead. It also beats "controllers" for the watchdog
// while a follower.
func (s *server) runLeadership(ctx context.Context, run func(ctx context.Context), beat func()) {
	runLeadership(ctx, s.st, s.cfg.Witness, s.log, run, beat)
}

// leadership is what runLeadership needs of the store.
type leadership interface {
	LeaderCh() <-chan bool
	TransferLeadership() error
}

// runLeadership is server.runLeadership over any leadership source.
func runLeadership(ctx context.Context, st leadership, witness bool, log *slog.Logger, run func(ctx context.Context), beat func()) {
	ch := st.LeaderCh()
	var stop context.CancelFunc
	var done chan struct{}
	halt := func() {
		if stop != nil {
			stop()
			<-done
			stop = nil
			log.Info("leadership lost: controllers stopped")
		}
	}
	defer halt()
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if stop == nil && beat != nil {
				beat()
			}
		case lead := <-ch:
			switch {
			case lead && witness:
				log.Info("a witness was elected leader: handing leadership over")
				go func() {
					if err := st.TransferLeadership(); err != nil {
						log.Warn("witness: transfer leadership", "err", err)
					}
				}()
			case lead && stop == nil:
				log.Info("leader: controllers start")
				stop, done = startRun(ctx, run)
			case !lead:
				halt()
			}
		}
	}
}

// startRun runs run in a goroutine under a child of ctx: cancel it and
// wait on done to stop it.
func startRun(ctx context.Context, run func(context.Context)) (cancel context.CancelFunc, done chan struct{}) {
	cctx, cancel := context.WithCancel(ctx)
	done = make(chan struct{})
	go func() { defer close(done); run(cctx) }()
	return cancel, done
}

// ensureVoter asks the leader, until this server is in the raft
// configuration, to add it as a voter; the request presents this server's
// certificate (a server adds itself only). A bootstrapped server is in it
// from the start. It checks every 3 s, except while this server is the
// ready leader, which is in its own configuration (raft steps a leader
// down once its removal is committed): then it waits for a change of
// leadership (a single server, idle, does not wake for it).
func (s *server) ensureVoter(ctx context.Context) {
	delay := time.Second
	noLeader := 0
	leading := s.st.LeaderCh()
	for {
		if s.st.IsLeader() {
			noLeader = 0
			select {
			case <-ctx.Done():
				return
			case <-leading:
			}
			if s.st.IsLeader() {
				continue
			}
		}
		svs, err := s.st.Servers()
		in := err == nil && slices.ContainsFunc(svs, func(v store.RaftServer) bool { return v.ID == s.cfg.NodeName })
		if id, _ := s.st.Leader(); id == "" {
			noLeader++
		} else {
			noLeader = 0
		}
		// A server removed while it was away (it left gracefully, or
		// failed too long) may still find itself in its own copy of the
		// configuration: no leader for a while says so too.
		if in && noLeader < 3 {
			delay = time.Second
			select {
			case <-ctx.Done():
				return
			case <-time.After(3 * time.Second):
			}
			continue
		}
		targets := slices.Clone(s.cfg.Servers)
		targets = append(targets, s.joinPeers...)
		if s.gossip != nil {
			targets = append(targets, s.gossip.m.Servers()...)
		}
		for _, t := range slices.Compact(targets) {
			if t == s.raftAddr {
				continue
			}
			if err := s.askAdd(ctx, t); err != nil {
				s.log.Warn("ask to be added as a voter", "server", t, "err", err)
				continue
			}
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, 15*time.Second)
	}
}

func (s *server) askAdd(ctx context.Context, target string) error {
	tlsc := pki.NodeTLSConfig(s.pki.CAHash(), nil)
	tlsc.GetClientCertificate = s.pki.RaftClientTLS().GetClientCertificate
	c, err := client.NewWithConfig(client.Config{Addr: "https://" + target, TLS: tlsc, Timeout: 20 * time.Second})
	if err != nil {
		return err
	}
	defer c.CloseIdleConnections()
	return c.AddServer(ctx, api.ServerAddRequest{Name: s.cfg.NodeName, RaftAddr: s.raftAddr})
}

// serverMembers is what membership reconciliation needs of the gossip.
type serverMembers interface {
	Members() []cluster.MemberInfo
}

// raftOps is what it needs of the store.
type raftOps interface {
	Servers() ([]store.RaftServer, error)
	RemoveServer(id string) error
}

// reconciler removes, on the leader, the servers that left the gossip
// gracefully at once and those failed (or unknown to it) for longer than
// after. Adding is not its job: a server asks to be added with its own
// certificate (ensureVoter), since gossip tags prove nothing.
type reconciler struct {
	self   string
	after  time.Duration
	failed map[string]time.Time // since when a server is seen failed
}

// step returns the servers to remove now.
func (r *reconciler) step(now time.Time, svs []store.RaftServer, members []cluster.MemberInfo) []string {
	if r.failed == nil {
		r.failed = map[string]time.Time{}
	}
	byName := map[string]cluster.MemberInfo{}
	for _, m := range members {
		if m.Role == cluster.RoleServer {
			byName[m.Name] = m
		}
	}
	var out []string
	seen := map[string]bool{}
	for _, sv := range svs {
		if sv.ID == r.self {
			continue
		}
		seen[sv.ID] = true
		m, ok := byName[sv.ID]
		switch {
		case ok && m.Status == cluster.StatusLeft:
			out = append(out, sv.ID)
		case !ok || m.Status == cluster.StatusFailed:
			since, was := r.failed[sv.ID]
			if !was {
				r.failed[sv.ID] = now
			} else if now.Sub(since) >= r.after {
				out = append(out, sv.ID)
			}
		default:
			delete(r.failed, sv.ID)
		}
	}
	for id := range r.failed {
		if !seen[id] {
			delete(r.failed, id)
		}
	}
	return out
}

// reconcile runs the reconciler every few seconds while ctx lasts (the
// leader's controllers' context).
func (s *server) reconcile(ctx context.Context, st raftOps, g serverMembers) {
	after := s.cfg.ServerRemoveAfter.D()
	if after <= 0 {
		after = defaultServerRemoveAfter
	}
	r := &reconciler{self: s.cfg.NodeName, after: after}
	every(ctx, 2*time.Second, func() {
		svs, err := st.Servers()
		if err != nil {
			return
		}
		for _, id := range r.step(time.Now(), svs, g.Members()) {
			if err := st.RemoveServer(id); err != nil {
				s.log.Warn("remove a gone server from raft", "server", id, "err", err)
				continue
			}
			s.log.Warn("server removed from raft (left the gossip, or failed longer than server_remove_after)", "server", id, "after", after)
		}
	})
}

// awaitFirstLeader waits, on a server that is the only voter of its raft
// configuration (a single server, the default), for its own election
// (about a second) before the API serves, so that its first answers can
// write. Any other server does not wait: its election needs the others,
// which reach it over the API port.
func (s *server) awaitFirstLeader() error {
	if !s.st.Replicated() {
		return nil
	}
	svs, err := s.st.Servers()
	if err != nil || len(svs) != 1 || svs[0].ID != s.cfg.NodeName {
		return nil
	}
	ch := s.st.LeaderCh()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case lead := <-ch:
			if lead {
				return nil
			}
		case <-deadline:
			s.log.Warn("no leader elected yet; serving anyway (writes answer no_quorum until one is)")
			return nil
		case <-s.ctx.Done():
			return nil
		}
	}
}

// syncJoinSecret follows a join secret rotated on another server (it is in
// the store) into this server's pki/join-secret.
func (s *server) syncJoinSecret(ctx context.Context) {
	followJoinSecret(ctx, s.st, s.api.SyncJoinSecret, s.log)
}

// followJoinSecret calls sync now and after each write of the join
// secret's record (a rotation, on any server: the record is replicated),
// until ctx ends. It watches the store for that kind instead of reading
// the record every few seconds: an idle server does nothing. A watch that
// ends (it fell behind the log's compaction, or a raft snapshot replaced
// the store) is opened again after a sync; one that cannot be opened is
// retried every watchRetry.
func followJoinSecret(ctx context.Context, st *store.Store, sync func() error, log *slog.Logger) {
	follow := func() {
		if err := sync(); err != nil {
			log.Warn("follow the join secret's rotation", "err", err)
		}
	}
	for {
		rev := st.Rev()
		follow() // reads what was written up to rev, at least
		ch, err := st.Watch(ctx, api.KindJoinSecret, rev)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("follow the join secret's rotation: watch the store", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(watchRetry):
			}
			continue
		}
		for range ch {
			follow()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// watchRetry is how long followJoinSecret waits before it opens again a
// store watch that failed to open.
const watchRetry = 2 * time.Second

// stopRaftFirst registers, last so that it runs first at stop (while the
// API still serves raft): a leader that stops gracefully hands its
// leadership to another voter (no election wait for the others), then the
// raft stream stops taking connections and lets go of those it holds, so
// that the API's shutdown does not wait on them.
func (s *server) stopRaftFirst() error {
	if s.raftStream == nil {
		return nil
	}
	s.onStop(func() {
		if svs, err := s.st.Servers(); err == nil && len(svs) > 1 && s.st.IsLeader() {
			if err := s.st.TransferLeadership(); err != nil {
				s.log.Warn("hand leadership over before stopping", "err", err)
			} else {
				s.log.Info("leadership handed over before stopping")
			}
		}
		s.raftStream.Stop()
	})
	return nil
}
