package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"strings"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/memberlist"
)

// Serf tag keys. Labels are stored one tag each as "label.<key>".
const (
	TagRole    = "role"
	TagAPI     = "api"
	TagIP      = "ip"
	TagPodCIDR = "pod_cidr"
	// TagLabelPrefix prefixes each node label's key.
	TagLabelPrefix = "label."
)

// MaxTagsSize is serf's limit on a member's encoded tags (memberlist's
// MetaMaxSize): 512 bytes.
const MaxTagsSize = memberlist.MetaMaxSize

// ErrTagsTooLarge is returned when the tags would encode past MaxTagsSize.
// Tags are never truncated: a node whose labels do not fit must shorten them.
var ErrTagsTooLarge = errors.New("tags too large")

// Tags is what a member announces about itself.
type Tags struct {
	// Role is "server" or "agent".
	Role string
	// APIAddr is the host:port of the server's TLS API (servers only).
	APIAddr string
	// IP is the node's IP for pod routes.
	IP string
	// PodCIDR is the node's pod subnet, e.g. 10.88.3.0/24 (agents, once
	// registered).
	PodCIDR string
	// Labels are the node's labels (node selectors match them).
	Labels map[string]string
	// Witness: a server that runs as a raft witness (tag voter=witness;
	// display only: the raft configuration, not a tag, makes a voter).
	Witness bool
}

// Validate checks each field's form and the encoded size.
func (t Tags) Validate() error {
	var errs []error
	switch t.Role {
	case RoleServer, RoleAgent:
	default:
		errs = append(errs, fmt.Errorf("role tag %q: want server or agent", t.Role))
	}
	if t.APIAddr != "" {
		if _, port, err := net.SplitHostPort(t.APIAddr); err != nil || port == "" {
			errs = append(errs, fmt.Errorf("api tag %q: want host:port", t.APIAddr))
		}
	}
	if t.IP != "" {
		if _, err := netip.ParseAddr(t.IP); err != nil {
			errs = append(errs, fmt.Errorf("ip tag %q is not an IP address", t.IP))
		}
	}
	if t.PodCIDR != "" {
		if _, err := netip.ParsePrefix(t.PodCIDR); err != nil {
			errs = append(errs, fmt.Errorf("pod_cidr tag %q is not a CIDR", t.PodCIDR))
		}
	}
	for k := range t.Labels {
		if k == "" {
			errs = append(errs, errors.New("label with an empty key"))
		}
	}
	if n := t.Size(); n > MaxTagsSize {
		errs = append(errs, fmt.Errorf("%w: they encode to %d bytes, serf allows %d: shorten the node's labels", ErrTagsTooLarge, n, MaxTagsSize))
	}
	return errors.Join(errs...)
}

// TagVoter is "witness" on a witness server's member.
const TagVoter = "voter"

// Map returns the serf tags: role, api, ip, pod_cidr (each only when set)
// and one "label.<key>" per label.
func (t Tags) Map() map[string]string {
	m := make(map[string]string, 4+len(t.Labels))
	set := func(k, v string) {
		if v != "" {
			m[k] = v
		}
	}
	set(TagRole, t.Role)
	set(TagAPI, t.APIAddr)
	set(TagIP, t.IP)
	set(TagPodCIDR, t.PodCIDR)
	if t.Witness {
		m[TagVoter] = "witness"
	}
	for k, v := range t.Labels {
		m[TagLabelPrefix+k] = v
	}
	return m
}

// Size is the length of the tags as serf encodes them (a magic byte and a
// msgpack map), to compare with MaxTagsSize.
func (t Tags) Size() int {
	var buf bytes.Buffer
	buf.WriteByte(0xff)
	if err := codec.NewEncoder(&buf, &codec.MsgpackHandle{}).Encode(t.Map()); err != nil {
		return MaxTagsSize + 1
	}
	return buf.Len()
}

// clone returns a deep copy so that callers cannot change a member's tags
// behind its back.
func (t Tags) clone() Tags {
	t.Labels = maps.Clone(t.Labels)
	return t
}

// TagsFromMap reads serf tags back; unknown keys are ignored.
func TagsFromMap(m map[string]string) Tags {
	t := Tags{Role: m[TagRole], APIAddr: m[TagAPI], IP: m[TagIP], PodCIDR: m[TagPodCIDR], Witness: m[TagVoter] == "witness"}
	for k, v := range m {
		if key, ok := strings.CutPrefix(k, TagLabelPrefix); ok {
			if t.Labels == nil {
				t.Labels = make(map[string]string)
			}
			t.Labels[key] = v
		}
	}
	return t
}
