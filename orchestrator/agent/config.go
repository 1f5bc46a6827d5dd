package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/containers"
	"github.com/skiff-edge/skiff/containers/images"
	"github.com/skiff-edge/skiff/netlb"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

// Config configures an Agent. Start from DefaultConfig.
type Config struct {
	// Node is this node's config: name, labels, directories, bridge,
	// CIDRs, cgroup parent, registries, reserve, max pods, advertise addr.
	Node configs.NodeConfig
	// Client reaches the API. Required.
	Client *client.Client
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Ready, if set, is called once when the first sync converged: the node
	// is registered, the load balancer programmed and every pod bound to
	// the node had its first sync (bounded by FirstSyncTimeout).
	Ready func()
	// Resync is how often every pod and the load balancer are synced
	// without a change. Default 10s.
	Resync time.Duration
	// Heartbeat is how often the node's Ready condition is refreshed.
	// Default 5s.
	Heartbeat time.Duration
	// LBDrainTimeout bounds how long a deleted pod waits for the load
	// balancers to drop it before SIGTERM. Default 2s.
	LBDrainTimeout time.Duration
	// FirstSyncTimeout bounds the wait for the first sync before Ready.
	// Default 60s.
	FirstSyncTimeout time.Duration
	// OfflineAfter is how long the agent tries to reach a server at start
	// before it runs from its local cache (if it has one): its pods and
	// load balancer come back from the cache then, and it keeps trying the
	// server in the background. Short, so that a node restarted without
	// its uplink serves at once; a server that answers within it is
	// listed instead (no stale cache replayed). Default 1s.
	OfflineAfter time.Duration
	// ShimPath is the binary re-executed as the container shim and init;
	// default /proc/self/exe (which must call containers.Init).
	ShimPath string
	// PodIOAddr, if set, is where this node serves its pods' logs and exec
	// to the servers (PodIOHandler, behind pki.AgentPodIOTLS): the agent
	// registers it as its Node's status.api_addr, where a server dials it.
	PodIOAddr string
	// Gossip, if set, is the cluster membership: once the node network is
	// set up, Run announces the pod CIDR there, keeps routes to the other
	// nodes' pod CIDRs and leaves failed nodes' endpoints out (peers.go).
	Gossip Gossip
	// LoadInterval is how often the agent samples its load balancer's
	// counters and its pods' CPU and reports the rates to the server
	// (load.go). Default 2s; negative turns measuring off.
	LoadInterval time.Duration
	// Activator bounds the connections held for apps scaled to zero
	// (activator.go).
	Activator ActivatorConfig
	// Metrics, if set, is the registry the agent's metrics go into: probe
	// results, load balancer sync durations and, while LoadInterval
	// measures, skiff_service_connections_per_second{service} (see
	// orchestrator/metrics). Nil: none are recorded.
	Metrics prometheus.Registerer
	// Beat, if set, registers one of the agent's main loops with the
	// systemd watchdog (orchestrator.Liveness.Beat): the loop calls the
	// returned tick on every turn, and is stuck when it does not for
	// longer than silence. The agent registers its pod loop, its load
	// balancer's sync loop and its cache loop as each starts.
	Beat func(name string, silence time.Duration) (tick func())
}

// DefaultConfig returns the defaults documented on Config for node.
func DefaultConfig(node configs.NodeConfig, c *client.Client) Config {
	return Config{
		Node:             node,
		Client:           c,
		Logger:           slog.Default(),
		Resync:           10 * time.Second,
		Heartbeat:        5 * time.Second,
		LBDrainTimeout:   2 * time.Second,
		FirstSyncTimeout: 60 * time.Second,
		OfflineAfter:     time.Second,
		LoadInterval:     2 * time.Second,
	}
}

// Validate fills zero values with defaults and checks the rest.
func (c *Config) Validate() error {
	d := DefaultConfig(c.Node, c.Client)
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	if c.Resync <= 0 {
		c.Resync = d.Resync
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = d.Heartbeat
	}
	if c.LBDrainTimeout <= 0 {
		c.LBDrainTimeout = d.LBDrainTimeout
	}
	if c.FirstSyncTimeout <= 0 {
		c.FirstSyncTimeout = d.FirstSyncTimeout
	}
	if c.OfflineAfter <= 0 {
		c.OfflineAfter = d.OfflineAfter
	}
	if c.LoadInterval == 0 {
		c.LoadInterval = d.LoadInterval
	}
	if c.Client == nil {
		return errors.New("agent: a client is required")
	}
	return c.Node.Validate()
}

// RuntimeConfig is the containers config of a node. log is the process's
// logger: the runtime adds its own component key.
func RuntimeConfig(n configs.NodeConfig, log *slog.Logger) containers.Config {
	cfg := containers.DefaultConfig()
	cfg.Root = n.DataDir
	cfg.StateDir = filepath.Join(n.RunDir, "containers")
	cfg.CgroupParent = n.CgroupParent
	cfg.InsecureRegistries = n.InsecureRegistries
	cfg.AllowUnconfined = n.AllowUnconfined
	cfg.ImageLimits = images.Limits{
		MaxLayerBytes:   int64(n.Images.MaxLayerBytes),
		MaxLayerEntries: n.Images.MaxLayerEntries,
		MinFreeBytes:    int64(n.Images.MinFreeBytes),
	}
	cfg.HostPaths = HostPathPolicy(n)
	if log != nil {
		cfg.Logger = log
	}
	return cfg
}

// HostPathPolicy is the host volume policy of a node: its
// host_volume_paths, and skiff's own paths refused even under them (data
// dir, run dir, API socket, token file). The agent enforces it at pod
// start; a server checks manifests against its own at apply time.
func HostPathPolicy(n configs.NodeConfig) containers.HostPathPolicy {
	p := containers.HostPathPolicy{Allowed: n.HostVolumePaths, Reserved: []containers.ReservedPath{
		{Name: "skiff's data dir", Path: n.DataDir},
		{Name: "skiff's run dir", Path: n.RunDir},
		{Name: "skiff's API socket", Path: filepath.Join(n.RunDir, configs.APISocketFile)},
	}}
	if n.TokenFile != "" {
		p.Reserved = append(p.Reserved, containers.ReservedPath{Name: "skiff's token file", Path: n.TokenFile})
	}
	return p
}

// NetConfig is the netlb config of a node; podCIDR may be nil for Cleanup.
// log is the process's logger: netlb adds its own component key.
func NetConfig(n configs.NodeConfig, podCIDR *net.IPNet, log *slog.Logger) (netlb.Config, error) {
	cfg := netlb.DefaultConfig()
	cfg.Bridge = n.Bridge
	cfg.StateDir = filepath.Join(n.DataDir, "netlb")
	cfg.RunDir = n.RunDir
	var err error
	if _, cfg.ClusterCIDR, err = net.ParseCIDR(n.ClusterCIDR); err != nil {
		return cfg, fmt.Errorf("cluster cidr: %w", err)
	}
	if _, cfg.ServiceCIDR, err = net.ParseCIDR(n.ServiceCIDR); err != nil {
		return cfg, fmt.Errorf("service cidr: %w", err)
	}
	cfg.PodCIDR = podCIDR
	if cfg.PodCIDR == nil {
		// Cleanup needs no pod CIDR, but Validate wants one inside the
		// cluster CIDR.
		cfg.PodCIDR = &net.IPNet{IP: cfg.ClusterCIDR.IP, Mask: net.CIDRMask(24, 32)}
	}
	if log != nil {
		cfg.Logger = log
	}
	return cfg, nil
}
