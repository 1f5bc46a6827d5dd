package cluster

import (
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
)

// serfConfig returns serf's config for a profile, before node-specific
// fields are set.
//
// The edge profile starts from serf.DefaultConfig with memberlist's
// DefaultLANConfig and changes only these knobs, for clusters of a handful
// of nodes on one LAN where a dead node must leave the load balancers fast:
//
//   - ProbeInterval 1s → 200ms. Each member probes one peer per interval, so
//     with 3-10 members a dead node is probed within a few hundred ms. The
//     cost is one small UDP ping/ack per member per interval: 5 pkt/s/node.
//   - ProbeTimeout 500ms → 100ms. A LAN round trip is well under a ms; the
//     timeout must stay below the interval. A missed ack only starts the
//     indirect probes and the TCP fallback; it does not declare anything.
//   - SuspicionMult 4 → 2. Suspicion lasts SuspicionMult × log10(n) (at least
//     1) × ProbeInterval: 400ms here. With SuspicionMult − 2 = 0 no peer
//     confirmation is awaited, so small clusters get the minimum at once
//     (with 4 and 5 members, memberlist would start at 6× the minimum and
//     wait for 2 confirmations). Lifeguard's local-health awareness
//     (AwarenessMaxMultiplier 8, unchanged) still stretches probe timeouts
//     on a member that is itself slow, which is what keeps a loaded box
//     from accusing healthy peers.
//   - GossipInterval 200ms → 100ms. The "dead" message reaches the other
//     members one gossip round sooner; gossip is only sent when there is
//     something to send.
//   - PushPullInterval 30s → 15s. Full state syncs, cheap for a few nodes,
//     heal missed gossip sooner.
//   - TCPTimeout 10s → 5s. Joins and push/pulls on a LAN either work at once
//     or not at all.
//   - ReconnectInterval 30s → 10s (serf). A failed edge node that comes back
//     (reboot, uplink flap) is reconnected sooner.
//
// Unchanged on purpose: RetransmitMult 4 (with n < 10 a message is sent
// 4 times), GossipNodes 3, IndirectChecks 3, ReapInterval 15s,
// ReconnectTimeout and TombstoneTimeout 24h (edge sites may be partitioned
// for hours; failed and left members stay known that long), no event
// coalescing (a failure is delivered the moment memberlist declares it).
func serfConfig(p Profile) *serf.Config {
	conf := serf.DefaultConfig()
	switch p {
	case ProfileWAN:
		conf.MemberlistConfig = memberlist.DefaultWANConfig()
	case ProfileEdge:
		ml := conf.MemberlistConfig
		ml.ProbeInterval = 200 * time.Millisecond
		ml.ProbeTimeout = 100 * time.Millisecond
		ml.SuspicionMult = 2
		ml.GossipInterval = 100 * time.Millisecond
		ml.PushPullInterval = 15 * time.Second
		ml.TCPTimeout = 5 * time.Second
		conf.ReconnectInterval = 10 * time.Second
	}
	return conf
}

// applyOverrides sets the ProbeInterval and SuspicionMult overrides, keeping
// ProbeTimeout below the interval as memberlist requires.
func applyOverrides(ml *memberlist.Config, probeInterval time.Duration, suspicionMult int) {
	if probeInterval > 0 {
		ml.ProbeInterval = probeInterval
		if ml.ProbeTimeout >= probeInterval {
			ml.ProbeTimeout = probeInterval / 2
		}
	}
	if suspicionMult > 0 {
		ml.SuspicionMult = suspicionMult
	}
}
