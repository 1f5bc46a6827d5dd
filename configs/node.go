package configs

// NodeConfig is the node config file (/etc/skiff/config.toml). Every key has
// a default (see DefaultNodeConfig) so that a bare `skiff server --agent` runs.
type NodeConfig struct {
	NodeName           string            `toml:"node_name" json:"node_name,omitempty"`
	Labels             map[string]string `toml:"labels" json:"labels,omitempty"`
	DataDir            string            `toml:"data_dir" json:"data_dir,omitempty"`
	RunDir             string            `toml:"run_dir" json:"run_dir,omitempty"`
	AdvertiseAddr      string            `toml:"advertise_addr" json:"advertise_addr,omitempty"`
	APIAddr            string            `toml:"api_addr" json:"api_addr,omitempty"`
	GossipAddr         string            `toml:"gossip_addr" json:"gossip_addr,omitempty"`
	Servers            []string          `toml:"servers" json:"servers,omitempty"`
	TokenFile          string            `toml:"token_file" json:"token_file,omitempty"`
	ClusterCIDR        string            `toml:"cluster_cidr" json:"cluster_cidr,omitempty"`
	ServiceCIDR        string            `toml:"service_cidr" json:"service_cidr,omitempty"`
	Bridge             string            `toml:"bridge" json:"bridge,omitempty"`
	CgroupParent       string            `toml:"cgroup_parent" json:"cgroup_parent,omitempty"`
	InsecureRegistries []string          `toml:"insecure_registries" json:"insecure_registries,omitempty"`
	Reserved           Reserved          `toml:"reserved" json:"reserved"`
	MaxPods            int               `toml:"max_pods" json:"max_pods,omitempty"`
	// NodeGrace is how long a failed node's pods wait before they are
	// replaced elsewhere.
	NodeGrace Duration `toml:"node_grace" json:"node_grace,omitempty"`
	Gossip    Gossip   `toml:"gossip" json:"gossip"`
}

// Reserved is what the node keeps back from pods.
type Reserved struct {
	CPU    float64 `toml:"cpu" json:"cpu,omitempty"`
	Memory Bytes   `toml:"memory" json:"memory,omitempty"`
}

// Gossip holds the serf/memberlist timings.
type Gossip struct {
	// Profile is edge (default, tuned for small LANs), lan or wan.
	Profile string `toml:"profile" json:"profile,omitempty"`
	// ProbeInterval and SuspicionMult override the profile when set.
	ProbeInterval Duration `toml:"probe_interval" json:"probe_interval,omitempty"`
	SuspicionMult int      `toml:"suspicion_mult" json:"suspicion_mult,omitempty"`
}
