package orchestrator

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/skiff-edge/skiff/cluster"
	"github.com/skiff-edge/skiff/configs"
)

// Files of the gossip member under <data_dir>/serf.
const (
	SerfDir      = "serf"
	KeyringFile  = "keyring"
	SnapshotFile = "snapshot"
	// PKIDir holds, on a server, the CA, the serving certificate, the join
	// secret and the first gossip key; on an agent, the node's key and
	// certificate and the CA.
	PKIDir = "pki"
)

// startMember starts this node's serf member: role, tags from the node
// config (ip, labels; api for a server), the gossip key (it seeds the
// keyring file under <data_dir>/serf on first start; later starts read the
// file, and key may be nil), the snapshot, and the profile and timings of
// [gossip].
func startMember(node configs.NodeConfig, role string, key []byte, logger *slog.Logger) (*cluster.Member, error) {
	cfg := cluster.DefaultConfig()
	cfg.NodeName = node.NodeName
	cfg.BindAddr = node.GossipAddr
	ip := node.AdvertiseAddr
	if ip == "" {
		if h, _, err := net.SplitHostPort(node.GossipAddr); err == nil && h != "" && h != "0.0.0.0" {
			ip = h
		}
	}
	cfg.AdvertiseAddr = ip
	cfg.Tags = cluster.Tags{Role: role, IP: ip, Labels: node.Labels}
	if role == cluster.RoleServer {
		cfg.Tags.APIAddr = apiAdvertise(node, ip)
		cfg.Tags.Witness = node.Witness
	}
	cfg.Profile = cluster.Profile(node.Gossip.Profile)
	cfg.ProbeInterval = node.Gossip.ProbeInterval.D()
	cfg.SuspicionMult = node.Gossip.SuspicionMult
	cfg.EncryptKey = key
	dir := filepath.Join(node.DataDir, SerfDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	cfg.KeyringFile = filepath.Join(dir, KeyringFile)
	if _, err := os.Stat(cfg.KeyringFile); err == nil {
		// The file wins (it may hold rotated keys); key only seeds a new
		// one, and is nil on a node that joined before.
		cfg.EncryptKey = nil
	}
	cfg.SnapshotPath = filepath.Join(dir, SnapshotFile)
	cfg.Logger = logger
	m, err := cluster.Start(cfg)
	if err != nil {
		return nil, err
	}
	if ip == "" {
		// memberlist picked the address: announce it as the node's IP.
		t := m.Tags()
		t.IP, _, _ = net.SplitHostPort(m.Addr())
		if role == cluster.RoleServer {
			t.APIAddr = apiAdvertise(node, t.IP)
		}
		if err := m.SetTags(t); err != nil {
			m.Shutdown()
			return nil, err
		}
	}
	return m, nil
}

// apiAdvertise is the API address other nodes reach: api_addr, with the
// node's IP when api_addr listens on every address.
func apiAdvertise(node configs.NodeConfig, ip string) string {
	host, port, err := net.SplitHostPort(node.APIAddr)
	if err != nil {
		return ""
	}
	if host == "" || host == "0.0.0.0" {
		if ip == "" {
			return ""
		}
		host = ip
	}
	return net.JoinHostPort(host, port)
}

// gossipAddrs turns API addresses (host:port) into gossip addresses: the
// same host on the default gossip port.
func gossipAddrs(apiAddrs []string) []string {
	_, port, _ := net.SplitHostPort(configs.DefaultGossipAddr)
	var out []string
	for _, a := range apiAddrs {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			host = a
		}
		out = append(out, net.JoinHostPort(host, port))
	}
	return out
}
