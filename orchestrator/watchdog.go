package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// The systemd watchdog (WatchdogSec= in the unit): skiff sends WATCHDOG=1
// only while its main loops are alive, so that systemd restarts a process
// that still exists but no longer works (a deadlocked controller, an API
// that accepts nothing). Liveness is two kinds of evidence, looked at each
// half watchdog interval:
//   - beats: a loop registers with a longest silence and ticks on each
//     turn, idle turns included (the controllers tick on their resync
//     ticker, every 5s); a loop silent for longer is stuck;
//   - checks: the watchdog itself asks a part to answer (GET /healthz on
//     the API's unix socket, a read of the store), bounded by a timeout;
//     while one is unanswered no new round starts and nothing is sent.
// The agent's loops are to tick a beat of their own the same way
// (Liveness.Beat); see docs/edge.md.

// Liveness collects the beats and checks the watchdog looks at. The zero
// value is not usable: newLiveness makes one.
type Liveness struct {
	// mu protects beats and checks.
	mu     sync.Mutex
	beats  []*Beat
	checks []namedCheck
}

type namedCheck struct {
	name string
	fn   func(context.Context) error
}

// Beat is one loop's heartbeat for the watchdog.
type Beat struct {
	name    string
	silence time.Duration
	last    atomic.Int64 // unix nanoseconds of the last Tick
}

func newLiveness() *Liveness { return &Liveness{} }

// Beat registers a loop that must Tick at least every silence.
func (l *Liveness) Beat(name string, silence time.Duration) *Beat {
	b := &Beat{name: name, silence: silence}
	b.Tick()
	l.mu.Lock()
	l.beats = append(l.beats, b)
	l.mu.Unlock()
	return b
}

// Tick says the loop is alive now. A nil *Beat does nothing.
func (b *Beat) Tick() {
	if b != nil {
		b.last.Store(time.Now().UnixNano())
	}
}

// Check registers fn, called each round with a deadline; an error or no
// answer means the part is not alive.
func (l *Liveness) Check(name string, fn func(context.Context) error) {
	l.mu.Lock()
	l.checks = append(l.checks, namedCheck{name, fn})
	l.mu.Unlock()
}

// stuck returns why the process is not alive at now, or nil: the silent
// beats and the failed checks. Checks run one after another within
// timeout all told.
func (l *Liveness) stuck(ctx context.Context, now time.Time, timeout time.Duration) []string {
	l.mu.Lock()
	beats, checks := append([]*Beat(nil), l.beats...), append([]namedCheck(nil), l.checks...)
	l.mu.Unlock()
	var why []string
	for _, b := range beats {
		if silent := now.Sub(time.Unix(0, b.last.Load())); silent > b.silence {
			why = append(why, fmt.Sprintf("%s silent for %s", b.name, silent.Round(time.Millisecond)))
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, c := range checks {
		if err := c.fn(ctx); err != nil {
			why = append(why, fmt.Sprintf("%s: %v", c.name, err))
		}
	}
	return why
}

// watchdog feeds systemd's watchdog while l says the process is alive.
type watchdog struct {
	l        *Liveness
	interval time.Duration      // between rounds: half of WatchdogSec
	notify   func(string) error // daemon.SdNotify in production
	log      *slog.Logger
	// rounds, if set, gets each round's verdict after its notification
	// was (or was not) sent; tests wait on it.
	rounds chan<- []string
}

// watchdogFromEnv returns the watchdog systemd asks for (WATCHDOG_USEC,
// set by WatchdogSec=), or nil when it asks for none.
func watchdogFromEnv(l *Liveness, log *slog.Logger) (*watchdog, error) {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return nil, fmt.Errorf("systemd watchdog: %w", err)
	}
	if d == 0 {
		return nil, nil
	}
	return &watchdog{l: l, interval: d / 2, log: log, notify: func(state string) error {
		_, err := daemon.SdNotify(false, state)
		return err
	}}, nil
}

// run sends WATCHDOG=1 each interval in which every beat ticked and every
// check answered, until ctx ends. A round whose checks do not answer
// within the interval holds the next ones back: nothing is sent until it
// ends, and systemd kills the process when WatchdogSec passes.
func (w *watchdog) run(ctx context.Context) {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	wasStuck := false
	for {
		why := w.l.stuck(ctx, time.Now(), w.interval)
		if ctx.Err() != nil {
			return
		}
		if len(why) == 0 {
			if err := w.notify(daemon.SdNotifyWatchdog); err != nil {
				w.log.Warn("sd_notify WATCHDOG=1", "err", err)
			}
			if wasStuck {
				w.log.Info("watchdog: every loop alive again")
			}
		} else {
			w.log.Error("watchdog: not alive; systemd's watchdog is not fed", "why", strings.Join(why, "; "))
		}
		wasStuck = len(why) > 0
		if w.rounds != nil {
			select {
			case w.rounds <- why:
			case <-ctx.Done():
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// apiCheck asks the API on its unix socket for /healthz: the listener
// accepts, the server's handler runs.
func apiCheck(sock string) func(context.Context) error {
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		DisableKeepAlives: true,
	}}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, "GET", "http://skiff/healthz", nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/healthz answered %s", resp.Status)
		}
		return nil
	}
}

// errNoAnswer is a check that did not answer within the round.
var errNoAnswer = errors.New("no answer")

// within runs fn in a goroutine and returns its error, or errNoAnswer if
// ctx ends first (a store read stuck behind a lock must not stick the
// watchdog too: it just stops feeding systemd). Only one fn runs at a
// time: while the last one has not returned, within answers errNoAnswer
// at once.
func within(fn func() error) func(context.Context) error {
	var busy atomic.Bool
	return func(ctx context.Context) error {
		if !busy.CompareAndSwap(false, true) {
			return errNoAnswer
		}
		done := make(chan error, 1)
		go func() {
			defer busy.Store(false)
			done <- fn()
		}()
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			return errNoAnswer
		}
	}
}
