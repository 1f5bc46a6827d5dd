package cluster

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// DefaultKeyringGuardPeriod is how often the keyring guard compares the
// member's keyring with the keys it was given, besides every member event
// and every key query serf logs.
const DefaultKeyringGuardPeriod = time.Second

// keyQueryKickDelay is how long the guard waits after serf logs that it
// received a key query before it checks: serf logs the query just before
// it changes the keyring.
const keyQueryKickDelay = 5 * time.Millisecond

// keyGuard keeps a member's keyring to the keys this node was given: at
// start (the keyring file, or the key handed over at join) and by its own
// code since (Member.SetKeys).
//
// Serf answers the internal queries _serf_install-key, _serf_use-key and
// _serf_remove-key itself, before the application sees any event, and
// serf v0.11 has no option to turn them off; memberlist's Keyring is a
// concrete type that cannot be wrapped. So any member that holds the
// gossip key can change every member's keyring (and, were serf given the
// keyring file, persist the change and lock out later joins). The guard
// cannot refuse such a query; it undoes its effect: on every member
// event, after every key query serf logs, and every period, it installs
// the missing keys, uses the expected primary and removes the extras, and
// logs a warning naming the change. Serf is never given the keyring file,
// so a query changes memory only, for at most the guard's period.
type keyGuard struct {
	ring   *memberlist.Keyring
	period time.Duration
	warn   func(msg string, args ...any)
	kick   chan struct{}

	// mu guards keys and primary, the expected keyring.
	mu      sync.Mutex
	keys    [][]byte
	primary []byte
}

func newKeyGuard(ring *memberlist.Keyring, period time.Duration, warn func(string, ...any)) *keyGuard {
	if period <= 0 {
		period = DefaultKeyringGuardPeriod
	}
	return &keyGuard{ring: ring, period: period, warn: warn, kick: make(chan struct{}, 1),
		keys: cloneKeys(ring.GetKeys()), primary: slices.Clone(ring.GetPrimaryKey())}
}

// expect replaces the expected keyring.
func (g *keyGuard) expect(keys [][]byte, primary []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.keys, g.primary = cloneKeys(keys), slices.Clone(primary)
}

// poke asks for a check soon, without blocking.
func (g *keyGuard) poke() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// run checks on every poke and every period until done is closed.
func (g *keyGuard) run(done <-chan struct{}) {
	t := time.NewTicker(g.period)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		case <-g.kick:
			time.Sleep(keyQueryKickDelay)
		}
		g.restore()
	}
}

// set makes keys (primary among them) the expected keyring and installs
// it: persist, when non-nil, writes the keyring file first.
func (g *keyGuard) set(keys [][]byte, primary []byte, persist func(keys [][]byte) error) error {
	if !containsKey(keys, primary) {
		return fmt.Errorf("set keys: the primary key is not among the keys")
	}
	for _, k := range keys {
		if len(k) != 16 && len(k) != 24 && len(k) != 32 {
			return fmt.Errorf("set keys: a key is %d bytes", len(k))
		}
	}
	ordered := [][]byte{primary}
	for _, k := range keys {
		if !containsKey(ordered, k) {
			ordered = append(ordered, k)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if persist != nil {
		if err := persist(ordered); err != nil {
			return err
		}
	}
	g.keys, g.primary = cloneKeys(ordered), slices.Clone(primary)
	g.restoreLocked()
	return nil
}

// restore makes the keyring hold exactly the expected keys with the
// expected primary, and reports whether it had to change anything (then
// it logs a warning naming the change).
func (g *keyGuard) restore() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	missing, extra, oldPrimary := g.restoreLocked()
	if len(missing) == 0 && len(extra) == 0 && oldPrimary == nil {
		return false
	}
	var what []string
	if len(extra) > 0 {
		what = append(what, "key "+strings.Join(extra, ", ")+" installed")
	}
	if oldPrimary != nil {
		what = append(what, fmt.Sprintf("primary key switched from %s to %s", fingerprint(g.primary), fingerprint(oldPrimary)))
	}
	if len(missing) > 0 {
		what = append(what, "key "+strings.Join(missing, ", ")+" removed")
	}
	g.warn("gossip keyring changed behind skiff's back (a member sent serf key queries); restored the keys this node was given",
		"change", strings.Join(what, "; "), "primary", fingerprint(g.primary))
	return true
}

// restoreLocked installs the missing expected keys, uses the expected
// primary and removes the other keys; it returns the fingerprints of the
// keys it installed (missing) and removed (extra), and the primary it
// replaced (nil if none). g.mu must be held.
func (g *keyGuard) restoreLocked() (missing, extra []string, oldPrimary []byte) {
	have, primary := g.ring.GetKeys(), g.ring.GetPrimaryKey()
	for _, k := range g.keys {
		if !containsKey(have, k) {
			missing = append(missing, fingerprint(k))
			if err := g.ring.AddKey(k); err != nil {
				g.warn("gossip keyring guard: reinstall a key", "key", fingerprint(k), "err", err)
			}
		}
	}
	if !bytes.Equal(primary, g.primary) {
		oldPrimary = primary
		if oldPrimary == nil {
			oldPrimary = []byte{}
		}
		if err := g.ring.UseKey(g.primary); err != nil {
			g.warn("gossip keyring guard: use the primary key", "key", fingerprint(g.primary), "err", err)
		}
	}
	for _, k := range have {
		if !containsKey(g.keys, k) {
			extra = append(extra, fingerprint(k))
			if err := g.ring.RemoveKey(k); err != nil {
				g.warn("gossip keyring guard: remove a key", "key", fingerprint(k), "err", err)
			}
		}
	}
	return missing, extra, oldPrimary
}

// fingerprint names a key in logs without revealing it: the first 8 hex
// digits of its SHA-256.
func fingerprint(k []byte) string {
	if k == nil {
		return "none"
	}
	sum := sha256.Sum256(k)
	return hex.EncodeToString(sum[:4])
}

func containsKey(keys [][]byte, k []byte) bool {
	return slices.ContainsFunc(keys, func(x []byte) bool { return bytes.Equal(x, k) })
}

func cloneKeys(keys [][]byte) [][]byte {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = slices.Clone(k)
	}
	return out
}
