package netlb

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"time"
	"unicode"
)

// Errors that callers may check with errors.Is.
var (
	// ErrInvalidConfig is wrapped by every error that Config.Validate returns.
	ErrInvalidConfig = errors.New("invalid netlb config")
	// ErrInvalidService is wrapped by Sync when a service or endpoint is malformed.
	ErrInvalidService = errors.New("invalid service")
	// ErrPoolExhausted is returned by AddPod when the pod CIDR has no free IP.
	ErrPoolExhausted = errors.New("pod cidr exhausted")
	// ErrInvalidPodName is returned for a pod name that cannot name a file.
	ErrInvalidPodName = errors.New("invalid pod name")
	// ErrBridgeNetfilter is returned by SetupNode when bridged traffic cannot
	// pass through iptables (br_netfilter missing), which hairpin needs.
	ErrBridgeNetfilter = errors.New("br_netfilter not available: modprobe br_netfilter")
	// ErrRestore wraps a failed iptables-restore; the rules in force are the
	// previous ones and the next Sync is a full one.
	ErrRestore = errors.New("iptables-restore failed")
)

// Backend names the iptables build that netlb drives. go-iptables and
// iptables-restore always use the same one.
type Backend string

// The iptables backends.
const (
	// BackendNFT is iptables over nf_tables (iptables-nft), Debian's default.
	BackendNFT Backend = "nft"
	// BackendLegacy is the x_tables build (iptables-legacy).
	BackendLegacy Backend = "legacy"
)

// Config is the node-level configuration of a Network. Build it with
// DefaultConfig and change what you need; New calls Validate.
type Config struct {
	// Bridge is the name of the node bridge that pods' veths join.
	// Default "skiff0". At most 15 characters.
	Bridge string
	// PodCIDR is this node's share of the cluster CIDR, e.g. 10.88.1.0/24.
	// Its first address is the bridge's (the pods' gateway). Required.
	PodCIDR *net.IPNet
	// ClusterCIDR holds every node's pod CIDR. Pod traffic to outside it is
	// masqueraded. Default 10.88.0.0/16.
	ClusterCIDR *net.IPNet
	// ServiceCIDR holds the service cluster IPs. Default 10.96.0.0/16. Sync
	// rejects a cluster IP outside it.
	ServiceCIDR *net.IPNet
	// NodeIPs are the addresses on which NodePorts answer. Empty (default)
	// means every local address of the node (-m addrtype --dst-type LOCAL).
	NodeIPs []net.IP
	// StateDir holds the IPAM files (<StateDir>/ipam). They must survive a
	// restart. Required: the node agent gives <data_dir>/netlb. It has no
	// default, so that a caller that forgets it (a test, a tool) fails
	// instead of handing out the node's real pod IPs.
	StateDir string
	// RunDir holds the netns mounts (<RunDir>/netns/<pod>). Required: the
	// node agent gives its run_dir.
	RunDir string
	// MTU of the bridge and of both ends of each veth. Default 1500; lower it
	// when the node's uplink has a smaller MTU.
	MTU int
	// Backend is the iptables build to drive. Default BackendNFT.
	Backend Backend
	// ConntrackTCP also deletes TCP conntrack entries of a removed endpoint
	// (UDP entries are always deleted). Established TCP connections to the
	// removed backend then break at once instead of lingering. Default false.
	ConntrackTCP bool
	// Logger receives the component's logs. Default slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the defaults described on Config (the bridge and
// the CIDRs are the node config's defaults). PodCIDR, StateDir and RunDir
// are left empty: every node has its own and the caller must set them.
func DefaultConfig() Config {
	_, cluster, _ := net.ParseCIDR("10.88.0.0/16")
	_, svc, _ := net.ParseCIDR("10.96.0.0/16")
	return Config{
		Bridge:      "skiff0",
		ClusterCIDR: cluster,
		ServiceCIDR: svc,
		MTU:         1500,
		Backend:     BackendNFT,
		Logger:      slog.Default(),
	}
}

var linkNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)

// Validate checks every field and returns all problems at once, each
// wrapping ErrInvalidConfig.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, a...)...))
	}
	if !linkNameRE.MatchString(c.Bridge) {
		bad("bridge %q: want 1-15 characters of [A-Za-z0-9_.-]", c.Bridge)
	}
	checkNet := func(name string, n *net.IPNet, maxOnes int) {
		switch {
		case n == nil:
			bad("%s: required", name)
		case n.IP.To4() == nil:
			bad("%s %s: only IPv4 is supported", name, n)
		default:
			if ones, _ := n.Mask.Size(); ones > maxOnes {
				bad("%s %s: prefix longer than /%d", name, n, maxOnes)
			}
		}
	}
	checkNet("pod_cidr", c.PodCIDR, 29)
	checkNet("cluster_cidr", c.ClusterCIDR, 29)
	checkNet("service_cidr", c.ServiceCIDR, 32)
	if c.PodCIDR != nil && c.ClusterCIDR != nil && !containsNet(c.ClusterCIDR, c.PodCIDR) {
		bad("pod_cidr %s is not inside cluster_cidr %s", c.PodCIDR, c.ClusterCIDR)
	}
	for _, ip := range c.NodeIPs {
		if ip.To4() == nil {
			bad("node ip %s: only IPv4 is supported", ip)
		}
	}
	if c.StateDir == "" {
		bad("state_dir: required")
	}
	if c.RunDir == "" {
		bad("run_dir: required")
	}
	if c.MTU < 576 || c.MTU > 65535 {
		bad("mtu %d: want 576-65535", c.MTU)
	}
	if c.Backend != BackendNFT && c.Backend != BackendLegacy {
		bad("backend %q: want %q or %q", c.Backend, BackendNFT, BackendLegacy)
	}
	return errors.Join(errs...)
}

// containsNet reports whether inner lies wholly inside outer.
func containsNet(outer, inner *net.IPNet) bool {
	oo, _ := outer.Mask.Size()
	io, _ := inner.Mask.Size()
	return io >= oo && outer.Contains(inner.IP)
}

// Protocol is a service's transport protocol.
type Protocol string

// The supported protocols.
const (
	TCP Protocol = "tcp"
	UDP Protocol = "udp"
)

// Service is one port of a service as the load balancer sees it. A service
// with several ports is several Services with distinct names (for example
// "web:http" and "web:metrics").
type Service struct {
	// Name identifies the service port; endpoints are looked up by it and
	// its chains are named after a hash of Name and Protocol.
	Name string
	// ClusterIP is the virtual IP inside Config.ServiceCIDR.
	ClusterIP net.IP
	// Port is the service port on ClusterIP (and ExternalIP).
	Port int
	// Protocol is TCP (default when empty) or UDP.
	Protocol Protocol
	// NodePort, when non-zero, also answers on every node address.
	NodePort int
	// ExternalIP, when set, also answers on that address at Port.
	ExternalIP net.IP
	// Affinity sends a client IP to the same endpoint for AffinityTimeout.
	Affinity bool
	// AffinityTimeout defaults to 3 hours when Affinity is set.
	AffinityTimeout time.Duration
	// Activator, when non-zero and the service (TCP) has no endpoints, is a
	// port on this node to which new connections to ClusterIP:Port are
	// redirected instead of rejected: the agent's activator holds them
	// while the app scales up from zero. SO_ORIGINAL_DST tells it which
	// service a connection was for.
	Activator int
}

// Endpoint is one ready backend of a service.
type Endpoint struct {
	IP   net.IP
	Port int
}

// Peer is another node whose pod CIDR is reached through its node IP
// (host-gw routing).
type Peer struct {
	Name    string
	NodeIP  net.IP
	PodCIDR *net.IPNet
}

func (s Service) proto() Protocol {
	if s.Protocol == "" {
		return TCP
	}
	return s.Protocol
}

// validate checks a service against the config.
func (s Service) validate(c *Config) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w %q: "+format, append([]any{ErrInvalidService, s.Name}, a...)...)
	}
	switch {
	case s.Name == "" || len(s.Name) > 200:
		return bad("name: want 1-200 bytes")
	case strings.ContainsFunc(s.Name, unicode.IsControl):
		return bad("name holds a control character")
	case s.ClusterIP.To4() == nil:
		return bad("cluster ip %v: want an IPv4 address", s.ClusterIP)
	case c.ServiceCIDR != nil && !c.ServiceCIDR.Contains(s.ClusterIP):
		return bad("cluster ip %s outside service cidr %s", s.ClusterIP, c.ServiceCIDR)
	case s.Port < 1 || s.Port > 65535:
		return bad("port %d", s.Port)
	case s.NodePort < 0 || s.NodePort > 65535:
		return bad("node port %d", s.NodePort)
	case s.Activator < 0 || s.Activator > 65535:
		return bad("activator port %d", s.Activator)
	case s.proto() != TCP && s.proto() != UDP:
		return bad("protocol %q: want tcp or udp", s.Protocol)
	case s.ExternalIP != nil && s.ExternalIP.To4() == nil:
		return bad("external ip %v: want an IPv4 address", s.ExternalIP)
	case s.AffinityTimeout < 0:
		return bad("negative affinity timeout")
	}
	return nil
}

func (e Endpoint) validate(svc string) error {
	if e.IP.To4() == nil || e.Port < 1 || e.Port > 65535 {
		return fmt.Errorf("%w %q: endpoint %v:%d", ErrInvalidService, svc, e.IP, e.Port)
	}
	return nil
}
