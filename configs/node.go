package configs

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
)

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
	HostVolumePaths    []string          `toml:"host_volume_paths" json:"host_volume_paths,omitempty"` // host volumes only under these; none by default
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
	Images    Images   `toml:"images" json:"images"`
	// LB holds, on servers, the addresses load-balancer services may take.
	LB LB `toml:"lb" json:"lb"`
	// DNS is the node's resolver for its pods.
	DNS DNS `toml:"dns" json:"dns"`

	// ListenTCP is cluster mode (what --listen-tcp turns on): the server
	// serves its TLS API on api_addr and gossips on gossip_addr. Default
	// false: the API is the local unix socket only.
	ListenTCP bool `toml:"listen_tcp" json:"listen_tcp,omitempty"`
	// MetricsAddr, when set (say "127.0.0.1:9090"), also serves /metrics
	// in plain HTTP, without authentication, on that address. Default
	// empty: /metrics is served only on the API listeners, with the API's
	// authentication.
	MetricsAddr string `toml:"metrics_addr" json:"metrics_addr,omitempty"`

	// AllowUnconfined lets containers with seccomp = "unconfined" run on
	// this node. Default true; false makes their start fail with a pod
	// event naming this key.
	AllowUnconfined bool `toml:"allow_unconfined" json:"allow_unconfined"`

	// UIAddr, if set, serves the web console (and only it) over plain
	// HTTP on this loopback address, for a browser on the box itself.
	// Empty (the default) serves the console only at /ui/ of the TLS API.
	UIAddr string `toml:"ui_addr" json:"ui_addr,omitempty"`

	// Witness runs this server as a witness (what --witness turns on): a
	// raft voter that keeps the log but runs no controllers and serves no
	// writes (docs/ha.md). Default false.
	Witness bool `toml:"witness" json:"witness,omitempty"`
	// ServerRemoveAfter is how long a server may stay failed in the
	// gossip before the leader removes it from the raft configuration.
	// Default 0: 5 minutes.
	ServerRemoveAfter Duration `toml:"server_remove_after" json:"server_remove_after,omitempty"`
}

// Images bounds what unpacking an image layer may take of the node.
type Images struct {
	// MaxLayerBytes caps a layer's uncompressed size (files and tar
	// headers); MaxLayerEntries its files, directories and links.
	MaxLayerBytes   Bytes `toml:"max_layer_bytes" json:"max_layer_bytes,omitempty"`
	MaxLayerEntries int   `toml:"max_layer_entries" json:"max_layer_entries,omitempty"`
	// MinFreeBytes is the free space that unpacking leaves on data_dir.
	MinFreeBytes Bytes `toml:"min_free_bytes" json:"min_free_bytes,omitempty"`
}

// Reserved is what the node keeps back from pods.
type Reserved struct {
	CPU    float64 `toml:"cpu" json:"cpu,omitempty"`
	Memory Bytes   `toml:"memory" json:"memory,omitempty"`
}

// DNS configures the resolver every agent runs for its pods: service names
// under Domain from the agent's view of the cluster, everything else
// forwarded to Upstreams.
type DNS struct {
	// Disabled turns the resolver off: pods keep their image's
	// resolv.conf.
	Disabled bool `toml:"disabled" json:"disabled,omitempty"`
	// Domain of service names (web.skiff). Default "skiff".
	Domain string `toml:"domain" json:"domain,omitempty"`
	// Upstreams ("IP" or "IP:PORT") answer every other name. Default: the
	// nameservers of ResolvConf.
	Upstreams []string `toml:"upstreams" json:"upstreams,omitempty"`
	// ResolvConf is read for the upstreams when Upstreams is empty.
	// Default /etc/resolv.conf.
	ResolvConf string `toml:"resolv_conf" json:"resolv_conf,omitempty"`
	// Port the resolver listens on, UDP and TCP, at the bridge's address.
	// Default 53 (pods' resolvers always ask port 53; another port is for
	// tests and benchmarks).
	Port int `toml:"port" json:"port,omitempty"`
	// CacheSize bounds the answers of upstreams kept. Default 1024.
	CacheSize int `toml:"cache_size" json:"cache_size,omitempty"`
}

// DNS defaults.
const (
	DefaultDNSDomain     = "skiff"
	DefaultDNSPort       = 53
	DefaultDNSCacheSize  = 1024
	DefaultDNSResolvConf = "/etc/resolv.conf"
)

// Gossip holds the serf/memberlist timings.
type Gossip struct {
	// Profile is edge (default, tuned for small LANs), lan or wan.
	Profile string `toml:"profile" json:"profile,omitempty"`
	// ProbeInterval and SuspicionMult override the profile when set.
	ProbeInterval Duration `toml:"probe_interval" json:"probe_interval,omitempty"`
	SuspicionMult int      `toml:"suspicion_mult" json:"suspicion_mult,omitempty"`
}

// Gossip profiles.
const (
	GossipEdge = "edge" // tuned for small LANs: fast failure detection
	GossipLAN  = "lan"  // memberlist's LAN defaults
	GossipWAN  = "wan"  // memberlist's WAN defaults
)

// Defaults of the node config (see DESIGN.md, "Files and ports"), the one
// home of these values: the orchestrator and the command read them here.
// The libraries the orchestrator drives (containers, netlb, cluster) import
// nothing of the project's; it always gives them the node's values, and
// the few library defaults that name the same things (bridge, CIDRs,
// cgroup parent, gossip address) are held equal to these by a test in
// cmd/skiff.
const (
	DefaultConfigPath   = "/etc/skiff/config.toml"
	DefaultDataDir      = "/var/lib/skiff"
	DefaultRunDir       = "/run/skiff"
	DefaultAPIAddr      = "0.0.0.0:7443"
	DefaultGossipAddr   = "0.0.0.0:7946"
	DefaultClusterCIDR  = "10.88.0.0/16"
	DefaultServiceCIDR  = "10.96.0.0/16"
	DefaultBridge       = "skiff0"
	DefaultCgroupParent = "skiff"
	DefaultMaxPods      = 110
	DefaultNodeGrace    = Duration(10 * time.Second)
	// The [images] limits: see images.Limits for why these.
	DefaultMaxLayerBytes   = Bytes(4 << 30)
	DefaultMaxLayerEntries = 500_000
	DefaultMinFreeBytes    = Bytes(1 << 30)
	// APISocketFile is the name of the API's unix socket in run_dir;
	// DefaultAPISocket is its path in the default run_dir.
	APISocketFile    = "skiff.sock"
	DefaultAPISocket = DefaultRunDir + "/" + APISocketFile
	// MaxPodsLimit is what a node's /24 of the cluster CIDR can address
	// (254 hosts less the bridge's address).
	MaxPodsLimit = 253
)

// DefaultNodeConfig returns the config a node runs with when the file sets
// nothing: node_name is the hostname (lower-cased), advertise_addr is empty
// (the caller detects the address of the default route), token_file is
// empty (no token file), no labels, servers, insecure registries or
// host_volume_paths (so host volumes are refused), nothing reserved,
// max_pods 110, node_grace 10s, gossip profile edge, layers of at most 4Gi
// and 500000 entries, 1Gi kept free, allow_unconfined true.
func DefaultNodeConfig() NodeConfig {
	host, _ := os.Hostname()
	return NodeConfig{
		NodeName:     strings.ToLower(host),
		DataDir:      DefaultDataDir,
		RunDir:       DefaultRunDir,
		APIAddr:      DefaultAPIAddr,
		GossipAddr:   DefaultGossipAddr,
		ClusterCIDR:  DefaultClusterCIDR,
		ServiceCIDR:  DefaultServiceCIDR,
		Bridge:       DefaultBridge,
		CgroupParent: DefaultCgroupParent,
		MaxPods:      DefaultMaxPods,
		NodeGrace:    DefaultNodeGrace,
		Gossip:       Gossip{Profile: GossipEdge},
		DNS:          DNS{Domain: DefaultDNSDomain, Port: DefaultDNSPort, CacheSize: DefaultDNSCacheSize, ResolvConf: DefaultDNSResolvConf},
		Images:       Images{MaxLayerBytes: DefaultMaxLayerBytes, MaxLayerEntries: DefaultMaxLayerEntries, MinFreeBytes: DefaultMinFreeBytes},
		// Docker's default too: a manifest may opt a container out of
		// the seccomp filter unless the node's owner says no.
		AllowUnconfined: true,
	}
}

// LoadNodeConfig returns the defaults overlaid with the config file at
// path, validated. An empty path means DefaultConfigPath; that file (and
// only that one) may be missing, which gives the defaults. Any other missing
// file is an error (errors.Is(err, fs.ErrNotExist)). Errors in the file come
// as an ErrorList with positions and field paths ("gossip.profile").
// Command-line flags are applied by the caller, who then calls Validate
// again.
func LoadNodeConfig(path string) (NodeConfig, error) {
	if path == "" {
		path = DefaultConfigPath
	}
	return loadNodeConfig(path, path == DefaultConfigPath)
}

// loadNodeConfig is LoadNodeConfig; optional says whether path may be
// missing.
func loadNodeConfig(path string, optional bool) (NodeConfig, error) {
	cfg := DefaultNodeConfig()
	data, err := os.ReadFile(path)
	if err != nil {
		if optional && errors.Is(err, fs.ErrNotExist) {
			return cfg, cfg.Validate()
		}
		return cfg, ErrorList{{File: path, Msg: ioMsg(err), err: err}}
	}
	err = cfg.decode(path, data)
	return cfg, err
}

// ParseNodeConfig is LoadNodeConfig for data already read from filename.
func ParseNodeConfig(filename string, data []byte) (NodeConfig, error) {
	cfg := DefaultNodeConfig()
	err := cfg.decode(filename, data)
	return cfg, err
}

// decode lays data over c and validates the result.
func (c *NodeConfig) decode(name string, data []byte) error {
	tree, perr := parseTOML(name, data)
	if perr != nil {
		return ErrorList{perr}
	}
	var e errs
	d := decoder{errs: &e}
	d.decodeStruct(nil, tree, reflect.ValueOf(c).Elem())
	decodeErrs := e.list
	var v errs
	c.validate(&v)
	list := append(ErrorList{}, decodeErrs...)
	list = append(list, dropRepeats(v.list, decodeErrs)...)
	f := parsedFile{name: name, ix: indexPositions(data)}
	list = f.locate(list)
	list.sortByPosition()
	return list.err()
}

// Validate checks c; the error is an ErrorList without positions.
func (c *NodeConfig) Validate() error {
	var e errs
	c.validate(&e)
	return e.list.err()
}

var (
	nodeNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)
	hostRE     = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$`)
)

func (c *NodeConfig) validate(e *errs) {
	switch {
	case c.NodeName == "":
		e.add(path{"node_name"}, "must not be empty (the hostname could not be read: set node_name)")
	case len(c.NodeName) > 253 || !nodeNameRE.MatchString(c.NodeName):
		e.add(path{"node_name"}, "%s is not a valid node name (lower-case letters, digits, '-' and '.')", quoteShort(c.NodeName))
	}
	checkLabels(e, path{"labels"}, c.Labels)
	for _, f := range []struct {
		key, val string
	}{{"data_dir", c.DataDir}, {"run_dir", c.RunDir}} {
		if !filepath.IsAbs(f.val) {
			e.add(path{f.key}, "%s is not an absolute path", quoteShort(f.val))
		}
	}
	if c.TokenFile != "" && !filepath.IsAbs(c.TokenFile) {
		e.add(path{"token_file"}, "%s is not an absolute path", quoteShort(c.TokenFile))
	}
	for i, hp := range c.HostVolumePaths {
		if !filepath.IsAbs(hp) || hp != "/" && filepath.Clean(hp) != strings.TrimSuffix(hp, "/") {
			e.add(path{"host_volume_paths"}.index(i), `%s is not a clean absolute path like "/srv/"`, quoteShort(hp))
		}
	}
	c.LB.validate(e)
	if c.AdvertiseAddr != "" {
		if a, err := netip.ParseAddr(c.AdvertiseAddr); err != nil || !a.Is4() || a.IsUnspecified() {
			e.add(path{"advertise_addr"}, "%s is not an IPv4 address of this node", quoteShort(c.AdvertiseAddr))
		}
	}
	checkListenAddr(e, path{"api_addr"}, c.APIAddr)
	checkListenAddr(e, path{"gossip_addr"}, c.GossipAddr)
	if c.MetricsAddr != "" {
		checkListenAddr(e, path{"metrics_addr"}, c.MetricsAddr)
	}
	if c.UIAddr != "" {
		checkUIAddr(e, c.UIAddr)
	}
	for i, s := range c.Servers {
		if msg := hostPortMsg(s, false); msg != "" {
			e.add(path{"servers"}.index(i), "%s", msg)
		}
	}
	cluster := checkCIDR(e, path{"cluster_cidr"}, c.ClusterCIDR, 24)
	service := checkCIDR(e, path{"service_cidr"}, c.ServiceCIDR, 30)
	if cluster.IsValid() && service.IsValid() && cluster.Overlaps(service) {
		e.add(path{"service_cidr"}, "%s overlaps cluster_cidr %s", service, cluster)
	}
	if n := len(c.Bridge); n == 0 || n > 15 || strings.ContainsAny(c.Bridge, "/: \t\n") || c.Bridge == "." || c.Bridge == ".." {
		e.add(path{"bridge"}, "%s is not a network interface name (at most 15 characters, no '/', ':' or spaces)", quoteShort(c.Bridge))
	}
	cp := c.CgroupParent
	if cp == "" || filepath.IsAbs(cp) || filepath.Clean(cp) != cp || cp == "." || strings.HasPrefix(cp, "..") {
		e.add(path{"cgroup_parent"}, `%s is not a relative cgroup path like "skiff"`, quoteShort(cp))
	}
	for i, r := range c.InsecureRegistries {
		if msg := hostPortMsg(r, true); msg != "" {
			e.add(path{"insecure_registries"}.index(i), "%s", msg)
		}
	}
	if math.IsNaN(c.Reserved.CPU) || math.IsInf(c.Reserved.CPU, 0) || c.Reserved.CPU < 0 {
		e.add(path{"reserved", "cpu"}, "must be >= 0")
	} else if c.Reserved.CPU > maxCPU {
		e.add(path{"reserved", "cpu"}, "must be at most %d cores", maxCPU)
	}
	if c.Reserved.Memory < 0 {
		e.add(path{"reserved", "memory"}, "must be >= 0")
	}
	if c.MaxPods < 1 || c.MaxPods > MaxPodsLimit {
		e.add(path{"max_pods"}, "must be 1-%d (a node's pods share a /24)", MaxPodsLimit)
	}
	if c.NodeGrace <= 0 {
		e.add(path{"node_grace"}, "must be > 0")
	}
	switch c.Gossip.Profile {
	case GossipEdge, GossipLAN, GossipWAN:
	default:
		e.add(path{"gossip", "profile"}, "%s", enumMsg(c.Gossip.Profile, "gossip profile", GossipEdge, GossipLAN, GossipWAN))
	}
	if c.Gossip.ProbeInterval < 0 {
		e.add(path{"gossip", "probe_interval"}, "must be >= 0")
	}
	if c.Gossip.SuspicionMult < 0 {
		e.add(path{"gossip", "suspicion_mult"}, "must be >= 0")
	}
	if d := c.DNS.Domain; d == "" || len(d) > 200 || !dnsDomainRE.MatchString(d) {
		e.add(path{"dns", "domain"}, "%s is not a DNS domain (lower-case labels joined by '.', like \"skiff\" or \"site.internal\")", quoteShort(d))
	}
	if c.DNS.Port < 1 || c.DNS.Port > 65535 {
		e.add(path{"dns", "port"}, "%s", portRangeMsg(int64(c.DNS.Port)))
	}
	if c.DNS.CacheSize < 1 {
		e.add(path{"dns", "cache_size"}, "must be >= 1")
	}
	for i, u := range c.DNS.Upstreams {
		if !validUpstream(u) {
			e.add(path{"dns", "upstreams"}.index(i), "%s is not an address (use \"IP\" or \"IP:PORT\")", quoteShort(u))
		}
	}
	if c.DNS.ResolvConf == "" {
		e.add(path{"dns", "resolv_conf"}, "must not be empty")
	}
	if c.Images.MaxLayerBytes < 1<<20 {
		e.add(path{"images", "max_layer_bytes"}, `must be at least 1Mi`)
	}
	if c.Images.MaxLayerEntries < 1 {
		e.add(path{"images", "max_layer_entries"}, "must be > 0")
	}
	if c.Images.MinFreeBytes < 1 {
		e.add(path{"images", "min_free_bytes"}, `must be > 0 (1 keeps nothing back)`)
	}
}

// checkListenAddr checks an "IP:port" to listen on (the IP may be empty or
// 0.0.0.0 for all addresses).
func checkListenAddr(e *errs, p path, s string) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		e.add(p, `%s is not an address like "0.0.0.0:7443"`, quoteShort(s))
		return
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			e.add(p, "%s is not an IP address", quoteShort(host))
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		e.add(p, "%s is not a port number", quoteShort(port))
	}
}

// checkUIAddr: the console's plain-HTTP port carries session cookies and
// tokens in clear, so it may listen on a loopback address only.
func checkUIAddr(e *errs, s string) {
	p := path{"ui_addr"}
	host, _, err := net.SplitHostPort(s)
	switch a, perr := netip.ParseAddr(host); {
	case err != nil:
		checkListenAddr(e, p, s)
	case host == "" || perr != nil || !a.IsLoopback():
		e.add(p, "%s is not a loopback address like \"127.0.0.1:7480\": the console's plain-HTTP port serves this box only (from elsewhere use /ui/ of the TLS API)", quoteShort(s))
	default:
		checkListenAddr(e, p, s)
	}
}

// hostPortMsg explains why s is not "host:port" (or "host" when the port
// is optional), or returns "".
func hostPortMsg(s string, portOptional bool) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if !portOptional || strings.Contains(s, ":") && !strings.HasPrefix(s, "[") {
			return fmt.Sprintf(`%s is not an address like "10.0.0.2:7443"`, quoteShort(s))
		}
		host, port = s, ""
		if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
			host = s[1 : len(s)-1]
		}
	}
	if _, err := netip.ParseAddr(host); err != nil && (len(host) > 253 || !hostRE.MatchString(host)) {
		return fmt.Sprintf("%s is not a host name or IP address", quoteShort(host))
	}
	if port != "" || !portOptional {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Sprintf("%s is not a port number", quoteShort(port))
		}
	}
	return ""
}

// checkCIDR parses an IPv4 network whose prefix is at most maxBits long.
func checkCIDR(e *errs, p path, s string, maxBits int) netip.Prefix {
	pfx, err := netip.ParsePrefix(s)
	switch {
	case err != nil:
		e.add(p, `%s is not a CIDR like "10.88.0.0/16"`, quoteShort(s))
	case !pfx.Addr().Is4():
		e.add(p, "%s is not an IPv4 network", quoteShort(s))
	case pfx.Masked() != pfx:
		e.add(p, "%s has host bits set (use %s)", quoteShort(s), pfx.Masked())
	case pfx.Bits() > maxBits:
		e.add(p, "%s is too small (at most /%d)", quoteShort(s), maxBits)
	default:
		return pfx
	}
	return netip.Prefix{}
}

var dnsDomainRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// validUpstream reports whether s is "IP" or "IP:PORT".
func validUpstream(s string) bool {
	if net.ParseIP(s) != nil {
		return true
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || net.ParseIP(host) == nil {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 1 && n <= 65535
}
