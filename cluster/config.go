package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"
)

// Profile names a set of serf/memberlist timings (see profile.go).
type Profile string

// The gossip profiles. Their names match configs.Gossip.Profile.
const (
	// ProfileEdge is tuned for small edge clusters on one LAN: a killed
	// node is declared failed in about a second instead of about six.
	ProfileEdge Profile = "edge"
	// ProfileLAN is serf's DefaultConfig with memberlist's DefaultLANConfig,
	// unchanged.
	ProfileLAN Profile = "lan"
	// ProfileWAN is serf's DefaultConfig with memberlist's DefaultWANConfig.
	ProfileWAN Profile = "wan"
)

// Roles a member announces in its role tag.
const (
	RoleServer = "server"
	RoleAgent  = "agent"
)

// DefaultBindAddr is where serf listens (TCP and UDP) unless told otherwise.
const DefaultBindAddr = "0.0.0.0:7946"

// KeySize is the length of the gossip key: AES-256.
const KeySize = 32

// ErrInvalidConfig is wrapped by every error of Config.Validate.
var ErrInvalidConfig = errors.New("invalid cluster config")

// Config configures one serf member. Build it with DefaultConfig, then set
// the fields; Start validates it.
type Config struct {
	// NodeName is the member's unique name in the cluster. Default: the
	// hostname.
	NodeName string

	// BindAddr is the host:port serf listens on, TCP and UDP. Default
	// 0.0.0.0:7946. Port 0 picks a free port (tests); Member.Addr tells
	// which.
	BindAddr string

	// AdvertiseAddr is the IP or IP:port other members reach this one at.
	// Default: the bind address, or memberlist's guess of a private IP when
	// binding 0.0.0.0 (set it on multi-homed hosts).
	AdvertiseAddr string

	// Tags are announced to every member. They must encode to at most 512
	// bytes (serf's limit, see Tags.Size); Validate and SetTags refuse more
	// rather than truncate.
	Tags Tags

	// Profile picks the timings: edge (default), lan or wan.
	Profile Profile

	// ProbeInterval and SuspicionMult override the profile's values when
	// non-zero. ProbeTimeout is then kept below ProbeInterval.
	ProbeInterval time.Duration
	SuspicionMult int

	// EncryptKey is the 32-byte AES-256 gossip key. It seeds KeyringFile on
	// first start; once the keyring file exists the file wins (it may hold
	// rotated keys) and EncryptKey is ignored. Gossip is always encrypted:
	// one of the two is required.
	EncryptKey []byte

	// KeyringFile is the keyring file (serf's format: a JSON list of base64
	// keys, primary first, mode 0600). It is created from EncryptKey on
	// first start and rewritten by Member.SetKeys, so the ring survives
	// restarts; serf itself is never given it, so that no member's key
	// query persists a change. Empty: the keys live in memory only.
	KeyringFile string

	// KeyringGuardPeriod is how often the keyring guard restores the keys
	// this member was given (besides at every member event and after every
	// key query serf logs). Default DefaultKeyringGuardPeriod.
	KeyringGuardPeriod time.Duration

	// SnapshotPath is serf's snapshot file: the members seen and the Lamport
	// clocks. A member restarted with it rejoins the members it knew by
	// itself, without Join. Empty: no snapshot.
	SnapshotPath string

	// RejoinAfterLeave makes a member that left gracefully rejoin from its
	// snapshot when it starts again. Default true: a node's agent that is
	// stopped and started again comes back by itself.
	RejoinAfterLeave bool

	// EventBuffer is the capacity of the Events channel. Default 256.
	EventBuffer int

	// Logger receives serf's and memberlist's logs, bridged to slog:
	// [ERR] → Error, [WARN] → Warn, serf [INFO] → Info, memberlist [INFO]
	// and all [DEBUG] → Debug. Default slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns a config with every default set: the hostname as
// node name, 0.0.0.0:7946, the edge profile, role agent, rejoin after leave.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		NodeName:         host,
		BindAddr:         DefaultBindAddr,
		Profile:          ProfileEdge,
		Tags:             Tags{Role: RoleAgent},
		RejoinAfterLeave: true,
		EventBuffer:      256,
	}
}

// Validate reports every problem of the config at once; each error wraps
// ErrInvalidConfig.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if c.NodeName == "" {
		bad("node name is empty")
	} else if len(c.NodeName) > 128 {
		bad("node name %q is longer than 128 bytes", c.NodeName)
	}
	if _, _, err := splitHostPort(c.BindAddr); err != nil {
		bad("bind address %q: %v", c.BindAddr, err)
	}
	if c.AdvertiseAddr != "" {
		if _, _, err := splitAdvertise(c.AdvertiseAddr); err != nil {
			bad("advertise address %q: %v", c.AdvertiseAddr, err)
		}
	}
	switch c.Profile {
	case ProfileEdge, ProfileLAN, ProfileWAN:
	default:
		bad("gossip profile %q: want edge, lan or wan", c.Profile)
	}
	if c.ProbeInterval < 0 || (c.ProbeInterval > 0 && c.ProbeInterval < 10*time.Millisecond) {
		bad("probe interval %s: want 0 (the profile's) or at least 10ms", c.ProbeInterval)
	}
	if c.SuspicionMult < 0 {
		bad("suspicion multiplier %d is negative", c.SuspicionMult)
	}
	if c.EncryptKey != nil && len(c.EncryptKey) != KeySize {
		bad("gossip key is %d bytes, want %d (AES-256)", len(c.EncryptKey), KeySize)
	}
	if c.EncryptKey == nil {
		if c.KeyringFile == "" {
			bad("a gossip key is required: set EncryptKey or KeyringFile")
		} else if _, err := os.Stat(c.KeyringFile); err != nil {
			bad("no gossip key: EncryptKey is empty and the keyring file cannot be read: %v", err)
		}
	}
	if c.EventBuffer < 0 {
		bad("event buffer %d is negative", c.EventBuffer)
	}
	if err := c.Tags.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%w: %w", ErrInvalidConfig, err))
	}
	return errors.Join(errs...)
}

// splitHostPort parses host:port where host is an IP (or empty for all
// addresses) and port is 0-65535.
func splitHostPort(s string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", portStr)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return "", 0, fmt.Errorf("host %q is not an IP address", host)
	}
	return host, port, nil
}

// splitAdvertise parses an IP or IP:port; port 0 means "the bind port".
func splitAdvertise(s string) (string, int, error) {
	if _, err := netip.ParseAddr(s); err == nil {
		return s, 0, nil
	}
	host, port, err := splitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	if host == "0.0.0.0" || host == "::" {
		return "", 0, fmt.Errorf("cannot advertise the unspecified address")
	}
	return host, port, nil
}
