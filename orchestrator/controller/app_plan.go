package controller

import (
	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

// appPlan is what the app controller does to one app in one pass.
type appPlan struct {
	// create is how many unbound pods of the current template to add
	// (replicas mode).
	create int
	// createOn lists nodes that get a new pod each, bound at once
	// (per-node mode).
	createOn []string
	// retire lists pods to remove: marked Deleting when their node is up,
	// deleted outright otherwise.
	retire []*api.Pod
	// status is the app's status after the pass (without history).
	status api.AppStatus
	// progressing is true while pods of an older template remain (an
	// update is under way).
	progressing bool
	// readyUpdated counts ready pods of the current template.
	readyUpdated int
	// unfit says, per node, why a per-node pod could not be placed.
	unfit map[string]string
}

// planApp decides what to do to bring app's pods (every pod of the app,
// any template) to the app's spec. hash is the current template hash; cl is
// the scheduler's view of the nodes, needed (and changed) in per-node mode
// only.
func planApp(app *api.App, hash string, pods []*api.Pod, nv *nodeView, cl *cluster) appPlan {
	var plan appPlan
	var live []*api.Pod
	for _, p := range pods {
		switch {
		case p.Spec.Deleting != nil:
		case replaceable(p, p.Spec.Restart):
			plan.retire = append(plan.retire, p)
		default:
			live = append(live, p)
		}
	}
	if app.Spec.Mode == configs.ModePerNode {
		planPerNode(&plan, app, hash, live, nv, cl)
	} else {
		planReplicas(&plan, app, hash, live, nv)
	}
	retired := map[string]bool{}
	for _, p := range plan.retire {
		retired[p.Name] = true
	}
	plan.status.TemplateHash = hash
	for _, p := range live {
		if retired[p.Name] {
			continue
		}
		plan.status.Replicas++
		if nv.podReady(p) {
			plan.status.Ready++
		}
		if p.Spec.TemplateHash == hash {
			plan.status.Updated++
			if nv.podReady(p) {
				plan.readyUpdated++
			}
		} else {
			plan.progressing = true
		}
	}
	return plan
}

func planReplicas(plan *appPlan, app *api.App, hash string, live []*api.Pod, nv *nodeView) {
	want := desiredReplicas(app)
	cur, old := splitByTemplate(live, hash)
	readyCur := countReady(cur, nv)
	if len(old) == 0 {
		if len(cur) < want {
			plan.create = want - len(cur)
		} else if len(cur) > want {
			plan.retire = append(plan.retire, victims(cur, live, nv)[:len(cur)-want]...)
		}
		return
	}
	// A rolling update, shaped like Kubernetes' deployment controller: add
	// new pods up to want+surge in all, and remove old ones while at least
	// want-unavailable pods stay ready.
	surge, unavailable := updateParams(&app.Spec)
	total := len(cur) + len(old)
	if len(cur) < want {
		plan.create = max(0, min(want+surge-total, want-len(cur)))
	} else if len(cur) > want {
		order := victims(cur, live, nv)
		extra := order[:len(cur)-want]
		plan.retire = append(plan.retire, extra...)
		total -= len(extra)
		cur = order[len(cur)-want:]
		readyCur = countReady(cur, nv)
	}
	minAvailable := want - unavailable
	readyOld := countReady(old, nv)
	budget := total - minAvailable - (len(cur) - readyCur)
	canDown := readyCur + readyOld - minAvailable
	for _, p := range victims(old, live, nv) {
		if budget <= 0 {
			break
		}
		if !nv.podReady(p) {
			plan.retire = append(plan.retire, p)
			budget--
			continue
		}
		if canDown <= 0 {
			continue
		}
		plan.retire = append(plan.retire, p)
		budget--
		canDown--
	}
}

// planPerNode plans a per-node app: one pod of the current template on
// each node that is ready, schedulable and matches the app's node
// selector. It goes node by node: a node's old pod is retired once its new
// one is ready, and at most max(surge, unavailable, 1) nodes update at a
// time. Pods on a node the app no longer selects (unless the node is down:
// node lifecycle removes those), or on no known node, are retired.
func planPerNode(plan *appPlan, app *api.App, hash string, live []*api.Pod, nv *nodeView, cl *cluster) {
	surge, unavailable := updateParams(&app.Spec)
	byNode := map[string][]*api.Pod{}
	for _, p := range live {
		byNode[p.Spec.Node] = append(byNode[p.Spec.Node], p)
	}
	budget := max(surge, unavailable, 1) - updatingNodes(byNode, hash, nv)
	plan.unfit = map[string]string{}
	for _, ni := range cl.nodes {
		n := ni.node
		selected := selectorMatches(app.Spec.NodeSelector, n.Spec.Labels)
		ps := byNode[n.Name]
		delete(byNode, n.Name)
		if !ni.ready || n.Spec.Unschedulable || !selected {
			// A node that is merely down keeps its pod: node lifecycle
			// removes it after the grace.
			if nv.byName[n.Name] != nil && !nv.up[n.Name] {
				continue
			}
			if !selected {
				plan.retire = append(plan.retire, ps...)
			}
			continue
		}
		cur, old := splitByTemplate(ps, hash)
		if len(cur) > 1 {
			plan.retire = append(plan.retire, victims(cur, live, nv)[:len(cur)-1]...)
			cur = cur[:1]
		}
		switch {
		case len(cur) == 1 && nv.podReady(cur[0]):
			plan.retire = append(plan.retire, old...)
		case len(cur) == 1:
		case len(old) == 0:
			if why := placeOn(plan, app, hash, ni); why != "" {
				plan.unfit[n.Name] = why
			}
		case budget > 0: // only old pods here: update this node
			budget--
			if surge > 0 && placeOn(plan, app, hash, ni) == "" {
				continue
			}
			// No room next to the old pod (host ports, resources): replace
			// it in place; the new pod comes on a later pass.
			plan.retire = append(plan.retire, old...)
		}
	}
	// Pods bound to no known node, or unbound: they have no place here.
	for _, ps := range byNode {
		plan.retire = append(plan.retire, ps...)
	}
}

// updatingNodes counts the nodes (of a per-node app's pods by node) whose
// pod of template hash is not ready yet. They use up the update budget, so
// that an update goes node by node.
func updatingNodes(byNode map[string][]*api.Pod, hash string, nv *nodeView) int {
	busy := 0
	for _, ps := range byNode {
		for _, p := range ps {
			if p.Spec.TemplateHash == hash && !nv.podReady(p) {
				busy++
				break
			}
		}
	}
	return busy
}

// placeOn plans a new pod of app's template hash on node ni, counted
// against the node at once, if it fits there; otherwise it returns why not.
func placeOn(plan *appPlan, app *api.App, hash string, ni *nodeInfo) (why string) {
	probe := newPod(app, hash, "", ni.node.Name)
	if why := ni.fit(probe); why != "" {
		return why
	}
	plan.createOn = append(plan.createOn, ni.node.Name)
	ni.add(probe)
	return ""
}

// splitByTemplate splits ps into the pods of template hash (cur) and the
// others (old), keeping their order.
func splitByTemplate(ps []*api.Pod, hash string) (cur, old []*api.Pod) {
	for _, p := range ps {
		if p.Spec.TemplateHash == hash {
			cur = append(cur, p)
		} else {
			old = append(old, p)
		}
	}
	return cur, old
}

func countReady(ps []*api.Pod, nv *nodeView) int {
	n := 0
	for _, p := range ps {
		if nv.podReady(p) {
			n++
		}
	}
	return n
}

// victims returns ps ordered by which to remove first when scaling down:
// unscheduled, then on a node that is down, then not yet running, then not
// ready, then on the node most crowded with this app's pods (counting all of
// live, less those already picked), then newest.
func victims(ps, live []*api.Pod, nv *nodeView) []*api.Pod {
	perNode := map[string]int{}
	for _, p := range live {
		perNode[p.Spec.Node]++
	}
	rank := func(p *api.Pod) [4]bool {
		return [4]bool{p.Spec.Node != "", nv.podNodeUp(p), p.Status.Phase == api.PodRunning, nv.podReady(p)}
	}
	first := func(a, b *api.Pod) bool {
		ra, rb := rank(a), rank(b)
		for k := range ra {
			if ra[k] != rb[k] {
				return !ra[k]
			}
		}
		if ca, cb := perNode[a.Spec.Node], perNode[b.Spec.Node]; ca != cb {
			return ca > cb
		}
		if !a.Created.Equal(b.Created) {
			return a.Created.After(b.Created)
		}
		return a.Name > b.Name
	}
	rest := append([]*api.Pod(nil), ps...)
	out := make([]*api.Pod, 0, len(ps))
	for len(rest) > 0 {
		best := 0
		for i := 1; i < len(rest); i++ {
			if first(rest[i], rest[best]) {
				best = i
			}
		}
		p := rest[best]
		out = append(out, p)
		perNode[p.Spec.Node]--
		rest = append(rest[:best], rest[best+1:]...)
	}
	return out
}
