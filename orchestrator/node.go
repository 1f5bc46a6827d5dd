package orchestrator

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/skiff-edge/skiff/configs"
)

// stopTimeout bounds how long a node waits for its goroutines to end.
const stopTimeout = 10 * time.Second

// node is one skiff process (RunServer, RunAgent) as it starts in phases.
// A phase that starts something registers how to stop it with onStop; a
// phase that runs something until the end starts it with goRun. stop is
// the one shutdown path, whether the node ran until its context ended, a
// part of it failed, or a later phase failed to start: it ends the
// goroutines first (bounded by stopTimeout), then runs the registered
// stops last first.
type node struct {
	cfg    configs.NodeConfig
	logger *slog.Logger // the caller's; components log through children of it
	log    *slog.Logger // the node's own

	// ctx ends the goroutines of goRun; cancel ends it with a cause.
	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup
	// errc holds the first failure of a goroutine.
	errc chan error

	// closers are the stops of the started phases, in start order. Only
	// the starting goroutine touches them.
	closers []func()
}

// newNode returns a node on cfg whose goroutines run until ctx ends.
// logger nil means slog.Default(); component names the node's own log.
func newNode(ctx context.Context, cfg configs.NodeConfig, logger *slog.Logger, component string) *node {
	if logger == nil {
		logger = slog.Default()
	}
	n := &node{cfg: cfg, logger: logger, log: logger.With("component", component), errc: make(chan error, 1)}
	n.ctx, n.cancel = context.WithCancelCause(ctx)
	return n
}

// onStop registers fn to run at stop, before the stops registered earlier.
func (n *node) onStop(fn func()) { n.closers = append(n.closers, fn) }

// goRun runs fn until the node's ctx ends; an error it returns ends the
// node (wait returns it).
func (n *node) goRun(fn func(ctx context.Context) error) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := fn(n.ctx); err != nil {
			n.fail(err)
		}
	}()
}

// fail ends the node with err; the first failure is the one wait returns.
// It never blocks.
func (n *node) fail(err error) {
	select {
	case n.errc <- err:
	default:
	}
}

// wait blocks until the node's ctx ends or a part fails, and returns the
// failure.
func (n *node) wait() error {
	select {
	case <-n.ctx.Done():
		return nil
	case err := <-n.errc:
		return err
	}
}

// stop shuts the node down: its goroutines are told to end and get
// stopTimeout to do so (a stop must not hang on a long sync; closing the
// store under a straggler only fails its writes), then the registered
// stops run, last first. Call it once.
func (n *node) stop() {
	n.cancel(nil)
	stopped := make(chan struct{})
	go func() { n.wg.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(stopTimeout):
		n.log.Warn("goroutines did not stop in time; stopping the rest under them", "timeout", stopTimeout)
	}
	for i := len(n.closers) - 1; i >= 0; i-- {
		n.closers[i]()
	}
}
