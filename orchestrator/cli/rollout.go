package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

// ErrRolloutTimeout is returned by RolloutStatus when its timeout passes
// first.
var ErrRolloutTimeout = errors.New("timed out waiting for the rollout")

// Scale sets an app's replicas and prints "app/web scaled".
func Scale(ctx context.Context, c *client.Client, w io.Writer, app string, replicas int) error {
	if replicas < 0 {
		return fmt.Errorf("--replicas must be >= 0, not %d", replicas)
	}
	if _, err := c.Scale(ctx, app, replicas); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%s scaled to %d\n", Ref(api.KindApp, app), replicas)
	return err
}

// RolloutDone reports whether an app's pods all run its current template
// (the controller's status is of the spec's template, and every pod is
// updated and ready), and a line saying how far the rollout is.
func RolloutDone(a *api.App) (bool, string) {
	ref := Ref(api.KindApp, a.Name)
	_, desired := AppDesired(a)
	s := a.Status
	// Until the app controller has seen the spec, its counts are those of
	// the template before.
	if want := api.TemplateHash(&a.Spec); s.TemplateHash != want {
		return false, fmt.Sprintf("Waiting for rollout of %s: waiting for the controller to take template %s...", ref, want)
	}
	if pp := s.Prepull; pp.Pending(s.TemplateHash) {
		return false, fmt.Sprintf("Waiting for rollout of %s: %s...", ref, pp.Summary())
	}
	if desired < 0 { // per-node: as many as the controller wants
		desired = s.Replicas
		if s.Updated < s.Replicas {
			desired = max(s.Replicas, s.Updated)
		}
	}
	switch {
	case s.Updated < desired:
		return false, fmt.Sprintf("Waiting for rollout of %s: %d out of %d new replicas have been updated...", ref, s.Updated, desired)
	case s.Replicas > s.Updated:
		return false, fmt.Sprintf("Waiting for rollout of %s: %d old replicas are pending termination...", ref, s.Replicas-s.Updated)
	case s.Ready < desired:
		return false, fmt.Sprintf("Waiting for rollout of %s: %d of %d updated replicas are ready...", ref, s.Ready, desired)
	}
	return true, fmt.Sprintf("%s successfully rolled out", ref)
}

// RolloutStatus follows an app until its rollout is done (see RolloutDone),
// printing a progress line whenever it changes. A timeout of 0 waits until
// ctx ends.
func RolloutStatus(ctx context.Context, c *client.Client, w io.Writer, app string, timeout time.Duration) error {
	// Always a context of our own: returning from inside a watch must end
	// that watch (its goroutine and connection) even without a timeout.
	var cancel context.CancelFunc
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, timeout)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	defer cancel()
	last := ""
	report := func(a *api.App) (bool, error) {
		done, line := RolloutDone(a)
		if line != last {
			last = line
			if _, err := fmt.Fprintln(w, Escape(line)); err != nil {
				return false, err
			}
		}
		return done, nil
	}
	for {
		a, err := c.GetApp(ctx, app)
		if err != nil {
			return rolloutErr(ctx, err)
		}
		if done, err := report(a); done || err != nil {
			return err
		}
		events, errc := c.Watch(ctx, api.KindApp, a.Revision)
		for ev := range events {
			if ev.Type == api.EventDelete {
				var gone api.App
				if DecodeInto(ev.Object, &gone) == nil && gone.Name == app {
					return fmt.Errorf("%s was deleted", Ref(api.KindApp, app))
				}
				continue
			}
			var b api.App
			if err := DecodeInto(ev.Object, &b); err != nil {
				return err
			}
			if b.Name != app {
				continue
			}
			if done, err := report(&b); done || err != nil {
				return err
			}
		}
		err = <-errc
		if ctx.Err() != nil {
			return rolloutErr(ctx, ctx.Err())
		}
		if !errors.Is(err, client.ErrWatchClosed) && !client.IsGone(err) {
			return err
		}
		// Read the app again and watch on.
	}
}

func rolloutErr(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return ErrRolloutTimeout
	}
	return err
}

// RolloutHistory prints an app's pod template revisions, oldest first, and
// marks the current one.
func RolloutHistory(ctx context.Context, c *client.Client, w io.Writer, app string) error {
	a, err := c.GetApp(ctx, app)
	if err != nil {
		return err
	}
	now := time.Now()
	hist := a.Status.History
	seen := false
	for _, h := range hist {
		seen = seen || h.TemplateHash == a.Status.TemplateHash
	}
	if !seen && a.Status.TemplateHash != "" {
		hist = append(hist, api.AppRevision{TemplateHash: a.Status.TemplateHash, Spec: a.Spec})
	}
	rows := make([][]string, 0, len(hist))
	for i, h := range hist {
		when := "-"
		if !h.Time.IsZero() {
			when = FormatAge(now.Sub(h.Time)) + " ago"
		}
		cur := ""
		if h.TemplateHash == a.Status.TemplateHash {
			cur = "*"
		}
		rows = append(rows, []string{strconv.Itoa(i + 1), h.TemplateHash, when, images(h.Spec.Containers), cur})
	}
	if len(rows) == 0 {
		_, err := fmt.Fprintf(w, "No history for %s yet.\n", Ref(api.KindApp, app))
		return err
	}
	return WriteTable(w, []string{"REVISION", "TEMPLATE", "CREATED", "IMAGES", "CURRENT"}, rows)
}

// RolloutUndo returns an app to its previous template (or to templateHash)
// and prints "app/web rolled back".
func RolloutUndo(ctx context.Context, c *client.Client, w io.Writer, app, templateHash string) error {
	if _, err := c.Rollback(ctx, app, templateHash); err != nil {
		return err
	}
	msg := Ref(api.KindApp, app) + " rolled back"
	if templateHash != "" {
		msg += " to " + Escape(templateHash)
	}
	_, err := fmt.Fprintln(w, msg)
	return err
}

// RolloutRestart replaces every pod of an app through its rolling update
// (a new revision that differs only by a restart stamp) and prints
// "app/web restarted". `rollout status` follows it.
func RolloutRestart(ctx context.Context, c *client.Client, w io.Writer, app string) error {
	if _, err := c.Restart(ctx, app); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, Ref(api.KindApp, app)+" restarted")
	return err
}

// rolloutNote says what is special about the rollout of an app's current
// template: that it is a rollback, and that it stopped at its progress
// deadline. It is empty for an ordinary rollout.
func rolloutNote(a *api.App) string {
	ro := a.Status.Rollout
	if ro == nil || ro.TemplateHash != a.Status.TemplateHash {
		return ""
	}
	var parts []string
	if ro.RollbackOf != "" {
		parts = append(parts, "rollback from template "+ro.RollbackOf)
	}
	if ro.DeadlineExceeded {
		parts = append(parts, "progress deadline exceeded")
	}
	return strings.Join(parts, "; ")
}
