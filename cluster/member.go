package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
)

// ErrGossipKey is returned by Join when a member was reached but refused
// our gossip, which with encrypted gossip means its key differs from ours.
var ErrGossipKey = errors.New("wrong gossip key")

// ErrJoin is returned by Join when no member could be reached.
var ErrJoin = errors.New("join failed")

// Status is a member's state as this member sees it.
type Status string

// Member statuses.
const (
	StatusAlive Status = "alive"
	// StatusSuspect: alive for serf, but memberlist suspects it (it missed
	// probes and has not refuted yet). It turns failed or alive shortly.
	StatusSuspect Status = "suspect"
	StatusLeaving Status = "leaving"
	StatusLeft    Status = "left"
	StatusFailed  Status = "failed"
)

// Running tells whether a member of this status still runs as far as the
// gossip knows: alive, or suspect (not yet found failed).
func (s Status) Running() bool { return s == StatusAlive || s == StatusSuspect }

// MemberInfo is one member of the cluster and its tags.
type MemberInfo struct {
	Name string
	// Addr and Port are the member's gossip address.
	Addr string
	Port uint16
	// Tags (Role, APIAddr, IP, PodCIDR, Labels) as the member announced them.
	Tags
	Status Status
}

// EventType is the kind of a membership change.
type EventType string

// Event types, after serf's member events.
const (
	EventJoin   EventType = "join"
	EventUpdate EventType = "update" // tags changed
	EventFailed EventType = "failed" // stopped answering probes
	EventLeave  EventType = "leave"  // left gracefully
	EventReap   EventType = "reap"   // forgotten after ReconnectTimeout/TombstoneTimeout
)

// Event is one member's change.
type Event struct {
	Type   EventType
	Member MemberInfo
}

// Member is this node's serf member. Its methods are safe for concurrent use.
type Member struct {
	serf   *serf.Serf
	logger *slog.Logger
	events chan Event
	// serfEvents is serf's EventCh; pump drains it into events.
	serfEvents chan serf.Event
	done       chan struct{}
	pumpDone   chan struct{}
	dropped    atomic.Uint64

	// mu guards tags, the tags last announced.
	mu   sync.Mutex
	tags Tags

	stopOnce    sync.Once
	keyringFile string
	keyring     *memberlist.Keyring
	// guard keeps keyring to the keys this node was given (keyguard.go).
	guard *keyGuard
}

// Start validates cfg, loads or creates the keyring, and starts the serf
// member. With a snapshot that names other members it rejoins them in the
// background; otherwise it is alone until Join.
func Start(cfg Config) (*Member, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.EventBuffer == 0 {
		cfg.EventBuffer = 256
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger.With("component", "cluster")

	conf := serfConfig(cfg.Profile)
	ml := conf.MemberlistConfig
	applyOverrides(ml, cfg.ProbeInterval, cfg.SuspicionMult)

	host, port, _ := splitHostPort(cfg.BindAddr)
	ml.BindAddr, ml.BindPort = host, port
	ml.AdvertisePort = port
	if cfg.AdvertiseAddr != "" {
		ahost, aport, _ := splitAdvertise(cfg.AdvertiseAddr)
		ml.AdvertiseAddr = ahost
		if aport != 0 {
			ml.AdvertisePort = aport
		}
	}
	ring, err := loadKeyring(cfg.KeyringFile, cfg.EncryptKey, logger)
	if err != nil {
		return nil, err
	}
	ml.Keyring = ring
	ml.Name = cfg.NodeName
	guard := newKeyGuard(ring, cfg.KeyringGuardPeriod, logger.Warn)
	stdLogger := newStdLogger(logger, func(msg string) {
		// serf logs each key query it received just before it acts on it.
		if strings.HasPrefix(msg, "serf: Received ") && strings.HasSuffix(msg, "-key query") {
			guard.poke()
		}
	})
	ml.Logger = stdLogger
	ml.LogOutput = nil

	m := &Member{
		logger:      logger,
		events:      make(chan Event, cfg.EventBuffer),
		serfEvents:  make(chan serf.Event, 256),
		done:        make(chan struct{}),
		pumpDone:    make(chan struct{}),
		tags:        cfg.Tags.clone(),
		keyringFile: cfg.KeyringFile,
		keyring:     ring,
		guard:       guard,
	}
	conf.NodeName = cfg.NodeName
	conf.Tags = cfg.Tags.Map()
	conf.EventCh = m.serfEvents
	conf.Logger = stdLogger
	conf.LogOutput = nil
	// serf is not given the keyring file: it would persist the keyring
	// changes that any member's key queries make. skiff writes the file
	// itself (loadKeyring, SetKeys) and the guard reverts those changes
	// in memory.
	conf.KeyringFile = ""
	conf.SnapshotPath = cfg.SnapshotPath
	conf.RejoinAfterLeave = cfg.RejoinAfterLeave

	s, err := serf.Create(conf)
	if err != nil {
		return nil, fmt.Errorf("start serf on %s: %w", cfg.BindAddr, err)
	}
	m.serf = s
	go m.pump()
	go guard.run(m.done)
	logger.Info("gossip started", "node", cfg.NodeName, "addr", m.Addr(), "profile", cfg.Profile,
		"probe_interval", ml.ProbeInterval, "suspicion_mult", ml.SuspicionMult)
	return m, nil
}

// PrimaryKey is the gossip key this member was given to encrypt with: a
// server hands it to a node that joins, over the pinned TLS connection.
// It is the guard's expected primary, not whatever a member's key query
// made primary in the meantime.
func (m *Member) PrimaryKey() []byte {
	m.guard.mu.Lock()
	defer m.guard.mu.Unlock()
	return slices.Clone(m.guard.primary)
}

// Keys are the keys this member was given, the primary first.
func (m *Member) Keys() [][]byte {
	m.guard.mu.Lock()
	defer m.guard.mu.Unlock()
	return cloneKeys(m.guard.keys)
}

// SetKeys makes keys, with primary among them, this member's keyring:
// the one way skiff's own code changes it (serf's KeyManager queries are
// reverted by the guard). It writes the keyring file first, when one is
// configured, so the ring survives a restart.
func (m *Member) SetKeys(keys [][]byte, primary []byte) error {
	var persist func([][]byte) error
	if m.keyringFile != "" {
		persist = func(ks [][]byte) error { return writeKeyringFile(m.keyringFile, ks) }
	}
	return m.guard.set(keys, primary, persist)
}

// CheckKeyring restores the keyring to the keys this member was given
// now, rather than at the guard's next check, and reports whether it had
// changed.
func (m *Member) CheckKeyring() bool { return m.guard.restore() }

// Name is this member's node name.
func (m *Member) Name() string { return m.serf.LocalMember().Name }

// Addr is this member's advertised gossip address, host:port; other members
// Join it there.
func (m *Member) Addr() string {
	lm := m.serf.LocalMember()
	return net.JoinHostPort(lm.Addr.String(), strconv.Itoa(int(lm.Port)))
}

// Join contacts the given members (host:port; a bare host means port 7946)
// and returns how many answered. It fails with ErrGossipKey when a member
// answered on its gossip port but refused our encrypted exchange, and with
// ErrJoin when none could be reached.
func (m *Member) Join(addrs []string) (int, error) {
	n, err := m.serf.Join(addrs, true)
	if n > 0 || err == nil {
		return n, nil
	}
	// memberlist flattens its errors to text, so tell a wrong key from an
	// unreachable member by reaching the gossip port ourselves: a member
	// that accepts TCP and then drops our push/pull is one that could not
	// decrypt it.
	for _, a := range addrs {
		if _, _, splitErr := net.SplitHostPort(a); splitErr != nil {
			a = net.JoinHostPort(a, "7946")
		}
		conn, dialErr := net.DialTimeout("tcp", a, time.Second)
		if dialErr != nil {
			continue
		}
		_ = conn.Close()
		hint := ""
		if m.keyringFile != "" {
			hint = fmt.Sprintf(" (if the cluster was re-created, remove %s and start again with its token)", m.keyringFile)
		}
		return 0, fmt.Errorf("join %s: %w: the member answered but refused our encrypted gossip, so this node's gossip keyring does not match the cluster's%s, or that port is not a gossip port: %s", a, ErrGossipKey, hint, oneLine(err))
	}
	return 0, fmt.Errorf("%w: no member reachable at %v: %s", ErrJoin, addrs, oneLine(err))
}

// oneLine flattens memberlist's multi-line multierror text.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// Local returns this member as the others see it.
func (m *Member) Local() MemberInfo {
	return m.info(m.serf.LocalMember(), nil)
}

// Members lists every member this one knows, itself included, sorted by
// name: alive, suspect, leaving, failed and left ones (failed and left
// members are forgotten after the reconnect and tombstone timeouts).
func (m *Member) Members() []MemberInfo {
	suspect := make(map[string]bool)
	if ml := m.serf.Memberlist(); ml != nil {
		for _, n := range ml.Members() {
			if n.State == memberlist.StateSuspect {
				suspect[n.Name] = true
			}
		}
	}
	members := m.serf.Members()
	out := make([]MemberInfo, 0, len(members))
	for _, sm := range members {
		out = append(out, m.info(sm, suspect))
	}
	slices.SortFunc(out, func(a, b MemberInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Servers returns the API addresses of the alive role=server members,
// sorted: where an agent can reach a server when the one it joined through
// is gone.
func (m *Member) Servers() []string {
	var out []string
	for _, mi := range m.Members() {
		if mi.Role == RoleServer && mi.APIAddr != "" && mi.Status.Running() {
			out = append(out, mi.APIAddr)
		}
	}
	slices.Sort(out)
	return out
}

// Events delivers member changes. The channel never blocks serf: when it is
// full the oldest event is dropped to make room (Dropped counts them), so a
// consumer that falls behind still gets the latest change. Consumers should
// be level-triggered: on any event, re-list Members(). The channel is closed
// after Shutdown or Leave.
func (m *Member) Events() <-chan Event { return m.events }

// Dropped is how many events were dropped because Events was full.
func (m *Member) Dropped() uint64 { return m.dropped.Load() }

// Tags returns the tags this member announces.
func (m *Member) Tags() Tags {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tags.clone()
}

// SetTags replaces this member's tags and gossips them (an update event on
// every member). Tags that encode past MaxTagsSize are refused with
// ErrTagsTooLarge.
func (m *Member) SetTags(t Tags) error {
	if err := t.Validate(); err != nil {
		return fmt.Errorf("set tags: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.serf.SetTags(t.Map()); err != nil {
		return fmt.Errorf("set tags: %w", err)
	}
	m.tags = t.clone()
	return nil
}

// Leave tells the cluster this member is leaving (the others get a leave
// event, not a failure), then shuts down. Safe to call more than once and
// after Shutdown.
func (m *Member) Leave() error {
	var err error
	if m.serf.State() == serf.SerfAlive {
		if lerr := m.serf.Leave(); lerr != nil {
			err = fmt.Errorf("leave: %w", lerr)
		}
	}
	return errors.Join(err, m.Shutdown())
}

// Shutdown stops the member without leaving: the others see it fail, as if
// the node had died. Safe to call more than once.
func (m *Member) Shutdown() error {
	var err error
	m.stopOnce.Do(func() {
		if serr := m.serf.Shutdown(); serr != nil {
			err = fmt.Errorf("shutdown serf: %w", serr)
		}
		close(m.done)
		<-m.pumpDone
	})
	return err
}

// Serf returns the underlying serf instance, for what this package does not
// wrap (queries, the raft wiring). Keyring changes through its KeyManager
// are reverted by the keyring guard: use SetKeys.
func (m *Member) Serf() *serf.Serf { return m.serf }

// pump turns serf's events into Events without ever blocking serf.
func (m *Member) pump() {
	defer close(m.pumpDone)
	defer close(m.events)
	for {
		select {
		case <-m.done:
			return
		case e := <-m.serfEvents:
			me, ok := e.(serf.MemberEvent)
			if !ok {
				continue // user events and queries are not used
			}
			m.guard.poke()
			typ, ok := eventTypes[me.Type]
			if !ok {
				continue
			}
			for _, sm := range me.Members {
				m.send(Event{Type: typ, Member: m.info(sm, nil)})
			}
		}
	}
}

// send queues ev, dropping the oldest queued event when the channel is full.
func (m *Member) send(ev Event) {
	for {
		select {
		case m.events <- ev:
			return
		default:
		}
		select {
		case <-m.events:
			m.dropped.Add(1)
		default:
		}
	}
}

var eventTypes = map[serf.EventType]EventType{
	serf.EventMemberJoin:   EventJoin,
	serf.EventMemberUpdate: EventUpdate,
	serf.EventMemberFailed: EventFailed,
	serf.EventMemberLeave:  EventLeave,
	serf.EventMemberReap:   EventReap,
}

// info converts a serf member; suspect, when given, marks memberlist's
// suspects.
func (m *Member) info(sm serf.Member, suspect map[string]bool) MemberInfo {
	mi := MemberInfo{Name: sm.Name, Port: sm.Port, Tags: TagsFromMap(sm.Tags)}
	if sm.Addr != nil {
		mi.Addr = sm.Addr.String()
	}
	switch sm.Status {
	case serf.StatusAlive:
		mi.Status = StatusAlive
		if suspect[sm.Name] {
			mi.Status = StatusSuspect
		}
	case serf.StatusLeaving:
		mi.Status = StatusLeaving
	case serf.StatusLeft:
		mi.Status = StatusLeft
	case serf.StatusFailed:
		mi.Status = StatusFailed
	default:
		mi.Status = Status(sm.Status.String())
	}
	return mi
}
