package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// Pre-pull before an update. An app whose update asks for it
// (configs.UpdateSpec.Prepull) has its new template's images put on every
// eligible node (Ready, schedulable, matching the template's node
// selector) before any pod of the update is made or any old one retired.
// Meanwhile the app keeps the template its pods run (PrepullStatus.From):
// a failed pod is replaced, a scale is followed, with that template.
//
// What is decided lives in the app's status (api.PrepullStatus): which
// nodes have the images, which failed, why, and when each tries again,
// and that the pull is done. Only the pulls in flight are in memory: after
// a restart the nodes not marked done are asked again (a node that has the
// images answers at once). A failed node is tried again after 5 s, doubling
// up to 5 min, and the update waits for it; a node that stops being
// eligible (NotReady, cordoned, relabelled) no longer counts.

// ImagePuller puts images on nodes for the pre-pull. Satisfied by the API
// server's view of the nodes' images (apiserver.Server.ImagePuller).
type ImagePuller interface {
	// EnsureImage makes node hold ref: nothing to do when it has it, a
	// pull otherwise. It may take minutes; it ends when ctx does.
	EnsureImage(ctx context.Context, node, ref string) error
}

// The back-off of a node's failed pre-pull.
const (
	prepullBackoffBase = 5 * time.Second
	prepullBackoffCap  = 5 * time.Minute
)

// pullKey is one node's pre-pull of one template of an app.
type pullKey struct{ app, hash, node string }

// pullJob is a pull to start: the key and the images.
type pullJob struct {
	key    pullKey
	images []string
}

// prepuller runs the pre-pulls. A pass reads the finished ones (results)
// and, once what it decided is written, takes them and starts new ones
// (controller.remember): a key is busy from its start until a pass took its
// result, so that it is never pulled twice at once.
type prepuller struct {
	puller ImagePuller
	// mark queues a pass over an app (when one of its pulls ends).
	mark func(app string)

	// mu protects ctx, busy and results.
	mu      sync.Mutex
	ctx     context.Context
	busy    map[pullKey]bool
	results map[pullKey]error
	wg      sync.WaitGroup
	// slots bounds the pulls that run at once.
	slots chan struct{}
}

// maxPrepulls is how many nodes pull at once (as the API's image fan-out).
const maxPrepulls = 8

func newPrepuller(p ImagePuller, mark func(string)) *prepuller {
	return &prepuller{puller: p, mark: mark, ctx: context.Background(), busy: map[pullKey]bool{}, results: map[pullKey]error{},
		slots: make(chan struct{}, maxPrepulls)}
}

// setContext bounds the pulls started from now on (RunConfig's context).
func (p *prepuller) setContext(ctx context.Context) {
	p.mu.Lock()
	p.ctx = ctx
	p.mu.Unlock()
}

// finished returns the results of app's pulls that no pass took yet.
func (p *prepuller) finished(app string) map[pullKey]error {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[pullKey]error{}
	for k, err := range p.results {
		if k.app == app {
			out[k] = err
		}
	}
	return out
}

func (p *prepuller) isBusy(k pullKey) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.busy[k]
}

// take forgets the results of keys (a pass wrote what they decided).
func (p *prepuller) take(keys []pullKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, k := range keys {
		if _, ok := p.results[k]; ok {
			delete(p.results, k)
			delete(p.busy, k)
		}
	}
}

// start starts the jobs whose keys are not busy.
func (p *prepuller) start(jobs []pullJob) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, j := range jobs {
		if p.busy[j.key] {
			continue
		}
		p.busy[j.key] = true
		p.wg.Add(1)
		go p.run(p.ctx, j)
	}
}

// run pulls j's images on its node, one after the other, and leaves the
// first error (or none) for the next pass over the app.
func (p *prepuller) run(ctx context.Context, j pullJob) {
	defer p.wg.Done()
	var err error
	select {
	case p.slots <- struct{}{}:
		defer func() { <-p.slots }()
	case <-ctx.Done():
		err = ctx.Err()
	}
	for _, ref := range j.images {
		if err != nil {
			break
		}
		if err = p.puller.EnsureImage(ctx, j.key.node, ref); err != nil {
			if !strings.Contains(err.Error(), ref) {
				err = fmt.Errorf("pull %s: %w", ref, err)
			}
			break
		}
	}
	p.mu.Lock()
	p.results[j.key] = err
	p.mu.Unlock()
	p.mark(j.key.app)
}

// wait waits for every pull started to end.
func (p *prepuller) wait() { p.wg.Wait() }

// prepullWanted reports whether app's update asks for a pre-pull and the
// controller can do one.
func (c *controller) prepullWanted(app *api.App) bool {
	return c.pulls != nil && app.Spec.Update != nil && app.Spec.Update.Prepull
}

// prepullStep carries app's pre-pull of template hash on, in app.Status.Prepull,
// and returns the app and template to plan the pass with: app and hash, or,
// while the pre-pull holds the update back, app with the template it keeps
// (From) and that template's hash. newTemplate says that this pass
// recorded hash as a new template (an update starts). Pulls to start and
// results read go into res, for remember.
func (c *controller) prepullStep(tx txn, app *api.App, hash string, newTemplate bool, mine []*api.Pod, nv *nodeView, now time.Time, res *appResult) (*api.App, string, error) {
	pp := app.Status.Prepull
	if newTemplate {
		pp = nil
		if c.prepullWanted(app) && !isRollback(app, hash) {
			if from := holdTemplate(app, hash, mine); from != "" {
				pp = &api.PrepullStatus{TemplateHash: hash, From: from, Images: templateImages(app), Started: now.UTC()}
				msg := fmt.Sprintf("template %s: pre-pulling %s before the update starts", hash, strings.Join(pp.Images, ", "))
				if err := tx.RecordEvent("apps/"+app.Name, api.EventNormal, "PrePulling", msg, sourceApps); err != nil {
					return nil, "", err
				}
			}
		}
	}
	if pp != nil && pp.TemplateHash != hash {
		pp = nil // from an earlier template
	}
	if pp != nil && pp.Done.IsZero() && !c.prepullWanted(app) {
		// prepull was turned off while the pull waited: the update goes on.
		msg := fmt.Sprintf("template %s: prepull turned off at %d/%d nodes: the update starts", hash, pp.PulledNodes(), len(pp.Nodes))
		if err := tx.RecordEvent("apps/"+app.Name, api.EventNormal, "PrePullSkipped", msg, sourceApps); err != nil {
			return nil, "", err
		}
		pp = nil
	}
	if pp != nil && pp.Done.IsZero() {
		pp = clonePrepull(pp)
		if err := c.advancePrepull(tx, app, pp, nv, now, res); err != nil {
			return nil, "", err
		}
	}
	app.Status.Prepull = pp
	if !pp.Pending(hash) {
		return app, hash, nil
	}
	hold := *app
	for _, r := range app.Status.History {
		if r.TemplateHash == pp.From {
			api.SetTemplate(&hold.Spec, &r.Spec)
			return &hold, pp.From, nil
		}
	}
	// From left the history (more than maxHistory templates since): there
	// is no template to hold on to, so the update goes on.
	return app, hash, nil
}

// advancePrepull updates pp (pending) by the nodes now eligible and the
// pulls that ended, marks it done when every eligible node has the images,
// and notes in res the pulls to start and when to look again.
func (c *controller) advancePrepull(tx txn, app *api.App, pp *api.PrepullStatus, nv *nodeView, now time.Time, res *appResult) error {
	results := c.pulls.finished(app.Name)
	for k := range results {
		res.took = append(res.took, k)
	}
	old := map[string]api.PrepullNode{}
	for _, n := range pp.Nodes {
		old[n.Name] = n
	}
	var out []api.PrepullNode
	var events []string
	gained := false
	for _, name := range eligibleNodes(app, nv) {
		e, ok := old[name]
		if !ok {
			e = api.PrepullNode{Name: name}
		}
		key := pullKey{app.Name, pp.TemplateHash, name}
		if !e.Pulled {
			if err, ok := results[key]; ok {
				if err == nil {
					e = api.PrepullNode{Name: name, Pulled: true}
					gained = true
				} else {
					e.Failures++
					d := min(prepullBackoffBase<<min(e.Failures-1, 10), prepullBackoffCap)
					e.Error = strings.Join(strings.Fields(err.Error()), " ")
					e.RetryAt = now.Add(d).UTC()
					events = append(events, fmt.Sprintf("template %s: node %s: %s (failure %d, retry in %s; the update waits)", pp.TemplateHash, name, e.Error, e.Failures, d))
				}
			} else if now.Before(e.RetryAt) {
				res.next = earliest(res.next, e.RetryAt)
			} else if !c.pulls.isBusy(key) {
				res.pulls = append(res.pulls, pullJob{key: key, images: pp.Images})
			}
		}
		out = append(out, e)
	}
	pp.Nodes = out
	for _, msg := range events {
		if err := tx.RecordEvent("apps/"+app.Name, api.EventWarning, "PrePullFailed", msg, sourceApps); err != nil {
			return err
		}
	}
	if pp.PulledNodes() < len(pp.Nodes) {
		if gained {
			// Progress, as an event too: "pre-pulling 1/2 nodes".
			msg := fmt.Sprintf("template %s: %s", pp.TemplateHash, pp.Summary())
			if i := strings.Index(msg, "; node "); i > 0 {
				msg = msg[:i]
			}
			return tx.RecordEvent("apps/"+app.Name, api.EventNormal, "PrePulling", msg, sourceApps)
		}
		return nil
	}
	pp.Done = now.UTC()
	res.pulls = nil
	msg := fmt.Sprintf("template %s: %s: the update starts", pp.TemplateHash, pp.Summary())
	if !isDry(tx) {
		c.appLog.Info("images pre-pulled; update starts", "app", app.Name, "template", pp.TemplateHash, "nodes", len(pp.Nodes))
	}
	return tx.RecordEvent("apps/"+app.Name, api.EventNormal, "PrePulled", msg, sourceApps)
}

// eligibleNodes lists, by name, the nodes app's template could run on:
// Ready, schedulable and matching its node selector. Resources and host
// ports are left out: the update frees some as it goes.
func eligibleNodes(app *api.App, nv *nodeView) []string {
	var out []string
	for name, n := range nv.byName {
		if nv.up[name] && !n.Spec.Unschedulable && selectorMatches(app.Spec.NodeSelector, n.Spec.Labels) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// holdTemplate is the template an app keeps while the pre-pull of hash
// lasts: the newest one of its history, other than hash, that has a pod
// not being deleted. "" when none has (a new app, or one at zero pods):
// there is nothing to hold on to, and no pre-pull.
func holdTemplate(app *api.App, hash string, mine []*api.Pod) string {
	live := map[string]bool{}
	for _, p := range mine {
		if p.Spec.Deleting == nil {
			live[p.Spec.TemplateHash] = true
		}
	}
	h := app.Status.History
	for i := len(h) - 1; i >= 0; i-- {
		if h[i].TemplateHash != hash && live[h[i].TemplateHash] {
			return h[i].TemplateHash
		}
	}
	return ""
}

// isRollback reports whether template hash is a rollback (rollout undo, or
// automatic): it goes back to images that ran, at once.
func isRollback(app *api.App, hash string) bool {
	r := app.Status.Rollout
	return r != nil && r.TemplateHash == hash && r.RollbackOf != ""
}

// templateImages lists the images of app's template, sorted, once each.
func templateImages(app *api.App) []string {
	var out []string
	for _, c := range app.Spec.Containers {
		if c != nil && !slices.Contains(out, c.Image) {
			out = append(out, c.Image)
		}
	}
	slices.Sort(out)
	return out
}

func clonePrepull(pp *api.PrepullStatus) *api.PrepullStatus {
	c := *pp
	c.Images = slices.Clone(pp.Images)
	c.Nodes = slices.Clone(pp.Nodes)
	return &c
}

// samePrepull compares two pre-pull states as stored.
func samePrepull(a, b *api.PrepullStatus) bool {
	if a == nil || b == nil {
		return a == b
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}
