package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

// cacheFile is the agent's local cache under the data dir: what it needs
// to run its pods and program its load balancer while no server answers
// (after a restart or a reboot with the uplink down).
const cacheFile = "agent-cache.json"

// cache is the content of the cache file.
type cache struct {
	PodCIDR   string           `json:"pod_cidr"`
	Services  []*api.Service   `json:"services"`
	Endpoints []*api.Endpoints `json:"endpoints"`
	// Pods are the pods bound to this node, as last seen.
	Pods []*api.Pod `json:"pods"`
	// Nodes are the cluster's nodes as the server last listed them: the
	// peer routes while no server answers.
	Nodes []peerNode `json:"nodes,omitempty"`
	Saved time.Time  `json:"saved"`
}

func (a *Agent) cachePath() string { return filepath.Join(a.cfg.Node.DataDir, cacheFile) }

// loadCache reads the cache; nil if there is none or it does not parse.
func (a *Agent) loadCache() *cache {
	b, err := os.ReadFile(a.cachePath())
	if err != nil {
		return nil
	}
	var c cache
	if err := json.Unmarshal(b, &c); err != nil {
		a.log.Warn("agent cache unreadable; ignoring it", "path", a.cachePath(), "err", err)
		return nil
	}
	return &c
}

// snapshot builds the cache from the agent's state.
func (a *Agent) snapshot(podCIDR string) *cache {
	c := &cache{PodCIDR: podCIDR, Saved: time.Now().UTC(), Pods: a.pods.snapshot(), Nodes: a.peers.snapshot()}
	c.Services, c.Endpoints = a.lb.snapshot()
	c.sort()
	return c
}

// sort orders the cache's lists by name. They come out of maps in random
// order, and cacheLoop writes the file whenever its bytes differ: unsorted,
// an idle node with a few pods rewrote it nearly every second (an SD card
// wears out under that).
func (c *cache) sort() {
	slices.SortFunc(c.Pods, func(a, b *api.Pod) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(c.Services, func(a, b *api.Service) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(c.Endpoints, func(a, b *api.Endpoints) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(c.Nodes, func(a, b peerNode) int { return strings.Compare(a.Name, b.Name) })
}

// fingerprint names every object of the (sorted) cache with its store
// revision, and the peers and pod CIDR: equal fingerprints mean equal
// content, since every change of an object moves its revision. It is ""
// when an object has no revision (then only the bytes can tell). Encoding
// the whole cache every second to compare it was a tenth of an idle
// node's CPU with 30 pods.
func (c *cache) fingerprint() string {
	var b strings.Builder
	b.WriteString(c.PodCIDR)
	add := func(kind, name string, rev int64) bool {
		fmt.Fprintf(&b, "|%s/%s@%d", kind, name, rev)
		return rev != 0
	}
	for _, p := range c.Pods {
		if !add("pod", p.Name, p.Revision) {
			return ""
		}
	}
	for _, s := range c.Services {
		if !add("svc", s.Name, s.Revision) {
			return ""
		}
	}
	for _, e := range c.Endpoints {
		if !add("ep", e.Name, e.Revision) {
			return ""
		}
	}
	for _, n := range c.Nodes {
		fmt.Fprintf(&b, "|node/%s/%s/%s", n.Name, n.Addr, n.PodCIDR)
	}
	return b.String()
}

// saveCache writes c atomically: a temporary file, synced, renamed into
// place. It is written only when its content changed (cacheLoop), so the
// sync costs little, and a power cut right after a save (the cold boot
// this cache exists for) finds the old file or the new one, never an
// empty one.
func (a *Agent) saveCache(c *cache) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	tmp := a.cachePath() + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write agent cache: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, a.cachePath())
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write agent cache: %w", err)
	}
	return nil
}

// cacheLoop saves the cache every interval when it changed.
func (a *Agent) cacheLoop(ctx context.Context, podCIDR string, every time.Duration, tick func()) {
	t := time.NewTicker(every)
	defer t.Stop()
	var last []byte
	var lastPrint string
	a.log.Debug("agent cache loop started", "path", a.cachePath())
	for {
		tick() // for the watchdog: every turn, a snapshot takes the agent's locks
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c := a.snapshot(podCIDR)
		print := c.fingerprint()
		if print != "" && print == lastPrint {
			continue // nothing changed: not even encoded
		}
		c.Saved = time.Time{}
		b, err := json.Marshal(c)
		if err != nil {
			a.log.Warn("encode agent cache", "err", err)
			continue
		}
		if string(b) == string(last) {
			lastPrint = print
			continue
		}
		c.Saved = time.Now().UTC()
		if err := a.saveCache(c); err != nil {
			a.log.Warn("save agent cache", "err", err)
			continue
		}
		last, lastPrint = b, print
		a.log.Debug("agent cache saved", "services", len(c.Services), "pods", len(c.Pods))
	}
}

// HasCache reports whether node has a local cache an agent can start from
// (a pod CIDR was saved): RunAgent then starts the agent at once and
// contacts the server in the background.
func HasCache(node configs.NodeConfig) bool {
	b, err := os.ReadFile(filepath.Join(node.DataDir, cacheFile))
	if err != nil {
		return false
	}
	var c cache
	return json.Unmarshal(b, &c) == nil && c.PodCIDR != ""
}
