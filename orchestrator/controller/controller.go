// Package controller runs skiff's scheduler and controllers against the
// state store: the scheduler binds pods to nodes; the app controller keeps
// each app's pods (replicas or one per node, rolling updates, rollback);
// the node lifecycle controller marks nodes NotReady (missed heartbeats,
// and with Config.Members a failed or departed gossip member) and takes
// pods off nodes down for longer than the grace; the endpoints controller
// lists each service's ready backends.
//
// The controllers are level-triggered. One watch on the store marks work
// (which apps, which services, whether pods wait for a node); a periodic
// resync marks everything. Each pass plans on one read-only snapshot and,
// only where something must change, writes in store transactions that read
// again what they decide on, so a restart in the middle of anything
// converges and a converged store costs one read per pass. The deciding logic is pure (schedule,
// planApp, endpointsFor) and tested without a store.
//
// What the controllers expect of a node's agent:
//   - A pod bound to its node (Spec.Node) is started; its status (phase,
//     IP, ready) is reported. Under restart "never" or "on-failure" a pod
//     whose containers end for good is reported Succeeded or Failed; the app
//     controller replaces a Failed pod (and, under "always", a Succeeded
//     one) and marks the old one Deleting.
//   - A pod with Spec.Deleting set has already left the endpoints: the
//     agent stops it (SIGTERM, grace, SIGKILL) and then deletes the object.
//   - A pod whose object is gone is stopped: pods of a node that was down
//     longer than the grace are deleted outright and replaced elsewhere, so
//     a node that comes back must drop them to keep one copy per replica.
//   - The node's Ready condition carries LastHeartbeat, and its agent renews
//     its lease (Config.Leases, in memory); when neither changes for
//     Config.HeartbeatTimeout the controller sets Ready false.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// Config holds the controllers' knobs. Start from DefaultConfig.
type Config struct {
	// Logger gets one child per component. Default slog.Default().
	Logger *slog.Logger
	// Resync is how often every app, service and pending pod is looked at
	// even without a change. Default 5s.
	Resync time.Duration
	// NodeGrace is how long a node may be down (Ready false or heartbeat
	// stale) before its pods are deleted and replaced elsewhere. Its
	// endpoints go at once. Default 10s (the node config's node_grace).
	NodeGrace time.Duration
	// HeartbeatTimeout makes a node whose Ready condition is true but
	// whose LastHeartbeat is older than this count as down, and the
	// controller writes its Ready condition false. 0 turns it off (nodes
	// that never send heartbeats are never timed out). Default 40s.
	HeartbeatTimeout time.Duration
	// MinSyncInterval is the least time between two passes, so that a burst
	// of watch events makes one pass. Default 50ms.
	MinSyncInterval time.Duration
	// MaxRetryDelay caps the back-off after a failed pass. Default Resync.
	MaxRetryDelay time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Members, if set, is the gossip view of the nodes: a node whose
	// member fails (seen by a server with most members alive) or leaves is
	// NotReady at once, without waiting for HeartbeatTimeout (see
	// nodes_gossip.go). Default nil: no gossip, only heartbeats count.
	Members MemberSource
	// Metrics, if set, gets the controllers' queue depths
	// (skiff_controller_queue_depth) while RunConfig runs. Default nil.
	Metrics prometheus.Registerer
	// Alive, if set, is called on every turn of the controllers' loop,
	// idle ones included (at least every Resync): the process's systemd
	// watchdog is fed only while it is called. It must not block.
	Alive func()
	// Leases, if set, are the agents' heartbeats kept in the server's
	// memory (apiserver.Leases): a node is alive while its lease or its
	// Ready condition's LastHeartbeat moves, whichever is later, and
	// neither costs a store write per beat. Default nil: LastHeartbeat
	// only.
	Leases LeaseSource
	// Load, if set, is the nodes' load reports: the autoscaler runs and
	// sets the replicas of apps with autoscale (autoscale.go). Default nil:
	// no autoscaler, autoscaled apps keep where they start.
	Load LoadSource
	// AutoscaleInterval is how often the autoscaler looks at the load.
	// Default 1s.
	AutoscaleInterval time.Duration
	// MaxReversals bounds the autoscaler's direction changes within
	// ReversalWindow: past it, scale downs after a scale up wait (scale
	// ups never do). Default 3 in 10 minutes.
	MaxReversals   int
	ReversalWindow time.Duration
	// Images, if set, puts images on nodes: apps whose update asks for a
	// pre-pull (configs.UpdateSpec.Prepull) have their new template's
	// images pulled on every eligible node before the update starts
	// (app_prepull.go). Default nil: no pre-pull, updates start at once.
	Images ImagePuller
}

// LeaseSource tells when a node last renewed its lease, by the server's
// clock (the zero time: not since the server started). Satisfied by
// *apiserver.Leases.
type LeaseSource interface {
	Renewed(node string) time.Time
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		Logger:           slog.Default(),
		Resync:           5 * time.Second,
		NodeGrace:        10 * time.Second,
		HeartbeatTimeout: 40 * time.Second,
		MinSyncInterval:  50 * time.Millisecond,
		Now:              time.Now,

		AutoscaleInterval: defaultAutoscaleInterval,
		MaxReversals:      defaultMaxReversals,
		ReversalWindow:    defaultReversalWindow,
	}
}

// ConfigFromNode returns the defaults with the node config's knobs applied
// (node_grace) and log as the logger.
func ConfigFromNode(nc *configs.NodeConfig, log *slog.Logger) Config {
	c := DefaultConfig()
	if log != nil {
		c.Logger = log
	}
	if nc != nil && nc.NodeGrace > 0 {
		c.NodeGrace = nc.NodeGrace.D()
	}
	return c
}

// Validate reports a knob that cannot work.
func (c *Config) Validate() error {
	var errs []error
	if c.Resync <= 0 {
		errs = append(errs, fmt.Errorf("resync %v: must be positive", c.Resync))
	}
	if c.NodeGrace < 0 {
		errs = append(errs, fmt.Errorf("node grace %v: must not be negative", c.NodeGrace))
	}
	if c.HeartbeatTimeout < 0 {
		errs = append(errs, fmt.Errorf("heartbeat timeout %v: must not be negative", c.HeartbeatTimeout))
	}
	if c.MinSyncInterval < 0 {
		errs = append(errs, fmt.Errorf("min sync interval %v: must not be negative", c.MinSyncInterval))
	}
	return errors.Join(errs...)
}

func (c *Config) fill() {
	d := DefaultConfig()
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	if c.MaxRetryDelay <= 0 {
		c.MaxRetryDelay = c.Resync
	}
	if c.AutoscaleInterval <= 0 {
		c.AutoscaleInterval = d.AutoscaleInterval
	}
	if c.MaxReversals <= 0 {
		c.MaxReversals = d.MaxReversals
	}
	if c.ReversalWindow <= 0 {
		c.ReversalWindow = d.ReversalWindow
	}
}

// Run runs the scheduler and every controller with the default config until
// ctx ends.
func Run(ctx context.Context, st *store.Store, log *slog.Logger) error {
	cfg := DefaultConfig()
	if log != nil {
		cfg.Logger = log
	}
	return RunConfig(ctx, st, cfg)
}

// RunConfig runs the scheduler and every controller until ctx ends. It
// returns nil when ctx ends and an error only for an invalid config.
func RunConfig(ctx context.Context, st *store.Store, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("controller config: %w", err)
	}
	cfg.fill()
	c := newController(st, cfg)
	if cfg.Metrics != nil {
		qc := queueCollector{c.queue}
		if err := cfg.Metrics.Register(qc); err != nil {
			return fmt.Errorf("controller metrics: %w", err)
		}
		defer cfg.Metrics.Unregister(qc)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if c.pulls != nil {
		c.pulls.setContext(ctx)
		defer c.pulls.wait()
	}
	since := st.Rev()
	c.queue.markAll()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.watch(ctx, since)
	}()
	if cfg.Members != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.followGossip(ctx, cfg.Members)
		}()
	}
	if cfg.Load != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.runAutoscaler(ctx)
		}()
	}
	c.loop(ctx)
	cancel()
	wg.Wait()
	return nil
}

// loop is the one place passes run: a select over queued work, the resync
// ticker and the wake-up for the next deadline (a node's grace, a
// heartbeat, an update's progress deadline), rate limited and with
// back-off after a failed pass.
func (c *controller) loop(ctx context.Context) {
	resync := time.NewTicker(c.cfg.Resync)
	defer resync.Stop()
	deadline := time.NewTimer(time.Hour)
	defer deadline.Stop()
	var last time.Time
	backoff := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.queue.ready:
		case <-resync.C:
			c.queue.markAll()
		case <-deadline.C:
			c.queue.markAll()
		}
		if c.cfg.Alive != nil {
			c.cfg.Alive()
		}
		wait := c.cfg.MinSyncInterval - time.Since(last)
		if backoff > wait {
			wait = backoff
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		w := c.queue.take()
		if w.empty() {
			continue
		}
		last = time.Now()
		next, err := c.sync(w)
		if err != nil {
			backoff = min(max(2*backoff, 50*time.Millisecond), c.cfg.MaxRetryDelay)
			c.log.Warn("sync failed; retrying", "err", err, "retry_in", backoff)
			c.queue.merge(w)
			continue
		}
		backoff = 0
		deadline.Stop()
		if !next.IsZero() {
			deadline.Reset(max(next.Sub(c.cfg.Now()), 0) + time.Millisecond)
		}
	}
}

// updateRetries is how often a transaction is retried on a revision
// conflict before the pass fails (and is retried with back-off).
const updateRetries = 5

// update runs fn in a store transaction, retrying on conflict.
func (c *controller) update(fn func(tx *store.Tx) error) error {
	var err error
	for range updateRetries {
		_, err = c.st.Update(fn)
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return err
}
