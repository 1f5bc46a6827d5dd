package cluster

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// ringIs reports whether ring holds exactly key, as its primary.
func ringIs(ring *memberlist.Keyring, key []byte) bool {
	keys := ring.GetKeys()
	return len(keys) == 1 && bytes.Equal(keys[0], key) && bytes.Equal(ring.GetPrimaryKey(), key)
}

// divergence watches a keyring every millisecond and records the longest
// time it did not hold exactly key.
type divergence struct {
	mu      sync.Mutex
	longest time.Duration
	seen    bool
	stop    chan struct{}
	done    chan struct{}
}

func watchRing(ring *memberlist.Keyring, key []byte) *divergence {
	d := &divergence{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(d.done)
		var since time.Time
		for {
			select {
			case <-d.stop:
				return
			case <-time.After(time.Millisecond):
			}
			now := time.Now()
			if ringIs(ring, key) {
				if !since.IsZero() {
					d.mu.Lock()
					d.longest = max(d.longest, now.Sub(since))
					d.mu.Unlock()
					since = time.Time{}
				}
				continue
			}
			if since.IsZero() {
				since = now
				d.mu.Lock()
				d.seen = true
				d.mu.Unlock()
			}
		}
	}()
	return d
}

func (d *divergence) result() (seen bool, longest time.Duration) {
	close(d.stop)
	<-d.done
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.seen, d.longest
}

// TestKeyQueriesAreReverted: a member holding the gossip key rotates the
// cluster's keyring through serf's key queries (install a new key, make
// it primary, remove the original). Each member's guard restores the keys
// it was given within its period, the keyring file is never rewritten,
// and a fresh member with the original key still joins.
func TestKeyQueriesAreReverted(t *testing.T) {
	key := NewKey()
	acfg := testConfig(t, "a", key)
	acfg.KeyringFile = filepath.Join(t.TempDir(), "keyring")
	a := startMember(t, acfg)
	b := startMember(t, testConfig(t, "b", key))
	if _, err := b.Join([]string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a sees b", 10*time.Second, func() bool { return statusOf(a, b.Name()) == StatusAlive })
	fileBefore, err := os.ReadFile(acfg.KeyringFile)
	if err != nil {
		t.Fatal(err)
	}

	watch := watchRing(a.keyring, key)
	rogue := NewKey()
	km := b.Serf().KeyManager()
	start := time.Now()
	// The queries may fail on members whose guard already reverted the
	// previous step: what matters is the keyring afterwards.
	for _, step := range []struct {
		name string
		do   func(string) error
		key  []byte
	}{
		{"install-key", func(k string) error { _, err := km.InstallKey(k); return err }, rogue},
		{"use-key", func(k string) error { _, err := km.UseKey(k); return err }, rogue},
		{"remove-key", func(k string) error { _, err := km.RemoveKey(k); return err }, key},
	} {
		err := step.do(base64.StdEncoding.EncodeToString(step.key))
		t.Logf("%s query sent (%s after the first): %v", step.name, time.Since(start).Round(time.Millisecond), err)
	}
	waitFor(t, "a's keyring restored to the original key", 2*DefaultKeyringGuardPeriod, func() bool { return ringIs(a.keyring, key) })
	waitFor(t, "b's keyring restored to the original key", 2*DefaultKeyringGuardPeriod, func() bool { return ringIs(b.keyring, key) })
	seen, longest := watch.result()
	t.Logf("a's keyring diverged: %v, for at most %s", seen, longest)
	if longest > DefaultKeyringGuardPeriod+200*time.Millisecond {
		t.Errorf("a's keyring stayed changed %s, longer than the guard period %s", longest, DefaultKeyringGuardPeriod)
	}
	if !bytes.Equal(a.PrimaryKey(), key) {
		t.Errorf("a hands over a primary key that is not the original")
	}
	fileAfter, err := os.ReadFile(acfg.KeyringFile)
	if err != nil || !bytes.Equal(fileBefore, fileAfter) {
		t.Errorf("a's keyring file changed: %s (err %v), was %s", fileAfter, err, fileBefore)
	}

	c := startMember(t, testConfig(t, "c", key))
	if _, err := c.Join([]string{a.Addr()}); err != nil {
		t.Fatalf("a fresh member with the original key cannot join a: %v", err)
	}
	waitFor(t, "a sees c", 10*time.Second, func() bool { return statusOf(a, c.Name()) == StatusAlive })
}

// TestKeyringGuardPeriod: a keyring change that no event or logged query
// reveals is reverted by the periodic check, within the period.
func TestKeyringGuardPeriod(t *testing.T) {
	key := NewKey()
	cfg := testConfig(t, "a", key)
	cfg.KeyringGuardPeriod = 300 * time.Millisecond
	a := startMember(t, cfg)
	rogue := NewKey()
	for i := range 3 {
		watch := watchRing(a.keyring, key)
		if err := a.keyring.AddKey(rogue); err != nil {
			t.Fatal(err)
		}
		if err := a.keyring.UseKey(rogue); err != nil {
			t.Fatal(err)
		}
		if err := a.keyring.RemoveKey(key); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the keyring restored", 2*cfg.KeyringGuardPeriod, func() bool { return ringIs(a.keyring, key) })
		_, longest := watch.result()
		t.Logf("round %d: reverted after %s", i, longest)
		if longest > cfg.KeyringGuardPeriod+100*time.Millisecond {
			t.Errorf("reverted after %s, want within the period %s", longest, cfg.KeyringGuardPeriod)
		}
	}
}

// TestSetKeys: the keys skiff's own code sets are kept, written to the
// keyring file, and guarded from then on.
func TestSetKeys(t *testing.T) {
	key := NewKey()
	cfg := testConfig(t, "a", key)
	cfg.KeyringFile = filepath.Join(t.TempDir(), "keyring")
	a := startMember(t, cfg)
	next := NewKey()
	if err := a.SetKeys([][]byte{key, next}, next); err != nil {
		t.Fatal(err)
	}
	if a.CheckKeyring() {
		t.Errorf("the guard reverted keys set by SetKeys")
	}
	if !bytes.Equal(a.PrimaryKey(), next) || len(a.keyring.GetKeys()) != 2 {
		t.Errorf("keyring after SetKeys: %d keys, primary next %v", len(a.keyring.GetKeys()), bytes.Equal(a.PrimaryKey(), next))
	}
	keys, err := readKeyringFile(cfg.KeyringFile)
	if err != nil || len(keys) != 2 || !bytes.Equal(keys[0], next) {
		t.Errorf("keyring file after SetKeys: %d keys, err %v", len(keys), err)
	}
	if err := a.keyring.RemoveKey(key); err != nil {
		t.Fatal(err)
	}
	if !a.CheckKeyring() || len(a.keyring.GetKeys()) != 2 {
		t.Errorf("a removed key was not restored")
	}
	if err := a.SetKeys([][]byte{key}, next); err == nil {
		t.Errorf("SetKeys took a primary that is not among the keys")
	}
}
