package clustertest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// phase runs f as a subtest with the cluster's helpers failing the
// subtest, and reports whether it passed.
func (h *HA) phase(t *testing.T, name string, f func(t *testing.T)) bool {
	return t.Run(name, func(st *testing.T) {
		old := h.t
		h.t = st
		defer func() { h.t = old }()
		f(st)
	})
}

// CLIOn runs the CLI on server i's socket and fails the test on an error.
func (h *HA) CLIOn(i int, args ...string) string {
	h.t.Helper()
	out, err := h.CLI(i, args...)
	if err != nil {
		h.t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// ApplyOn writes manifest to a file and runs `skiff apply -f` on server i.
func (h *HA) ApplyOn(i int, manifest string) {
	h.t.Helper()
	f := filepath.Join(h.dir, fmt.Sprintf("manifest-%d.toml", time.Now().UnixNano()))
	if err := os.WriteFile(f, []byte(manifest), 0o600); err != nil {
		h.t.Fatal(err)
	}
	h.CLIOn(i, "apply", "-f", f)
}

// WaitAppReadyHA waits until the app has count ready pods (and as many
// endpoints) in the view of the leader.
func (h *HA) WaitAppReadyHA(app string, count int, timeout time.Duration) []api.Pod {
	h.t.Helper()
	var pods []api.Pod
	h.WaitFor(fmt.Sprintf("%d ready pods of %s", count, app), timeout, func() (bool, error) {
		s := h.AnyLiveServer()
		if s < 0 {
			return false, fmt.Errorf("no server runs")
		}
		p, err := h.readyPodsOn(s, app, app, count)
		pods = p
		return err == nil, err
	})
	return pods
}

var counterRE = regexp.MustCompile(`\[\d+:\d+\]`)

// natRules is node i's nat table without counters and comments: what the
// agent's load balancer programmed.
func (h *HA) natRules(i int) string {
	h.t.Helper()
	out, err := h.IptablesNAT(i)
	if err != nil {
		h.t.Fatal(err)
	}
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "#") || l == "" {
			continue
		}
		keep = append(keep, counterRE.ReplaceAllString(l, ""))
	}
	return strings.Join(keep, "\n")
}

// appProcsOn is AppProcs sorted, as one string.
func (h *HA) appProcsOn(i int) string {
	p := h.AppProcs(i, "app")
	sort.Strings(p)
	return strings.Join(p, ",")
}

// putConfig writes config name=value on server i, following not_leader
// answers, until a server acknowledges it (or the timeout).
func (h *HA) putConfigAcked(start int, name, value string, timeout time.Duration) int {
	h.t.Helper()
	srv := start
	var last RawResult
	err := h.Poll(timeout, func() (bool, error) {
		last = h.Raw(srv, http.MethodPut, "/v1/configs/"+name, configBody(name, value, 0), 3*time.Second)
		if last.Err == nil && (last.Status == http.StatusOK || last.Status == http.StatusCreated) {
			return true, nil
		}
		if l := h.NodeOfAPIAddr(last.Header.Get("Skiff-Leader")); last.Code == "not_leader" && l >= 0 {
			srv = l
		} else if l := h.Leader(); l >= 0 {
			srv = l
		}
		return false, fmt.Errorf("%s", refusal(last))
	})
	if err != nil {
		h.t.Fatalf("write of config %s: %v", name, err)
	}
	return srv
}

// localConfig reads config name from server i's own store (no consistent
// read: what that server holds).
func (h *HA) localConfig(i int, name string) (string, error) {
	r := h.Raw(i, http.MethodGet, "/v1/configs/"+name, nil, 3*time.Second)
	if r.Err != nil {
		return "", r.Err
	}
	if r.Status != http.StatusOK {
		return "", fmt.Errorf("http %d %s", r.Status, r.Code)
	}
	var c api.Config
	if err := json.Unmarshal(r.Body, &c); err != nil {
		return "", err
	}
	return c.Spec.Files["v"], nil
}

// Members is `skiff members` on server i, one line per member, keyed by
// name.
func (h *HA) Members(i int) (map[string]string, error) {
	out, err := h.CLI(i, "members")
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) > 0 {
			m[f[0]] = l
		}
	}
	return m, nil
}

// hasField reports whether a members line has the word w as a column.
func hasField(line, w string) bool {
	for _, f := range strings.Fields(line) {
		if f == w {
			return true
		}
	}
	return false
}

// WaitVoters waits until `skiff members` on the leader shows exactly the
// named server nodes as voters (a witness shows as "witness").
func (h *HA) WaitVoters(want []int, timeout time.Duration) {
	h.t.Helper()
	h.WaitFor(fmt.Sprintf("voters %v in skiff members", want), timeout, func() (bool, error) {
		l := h.Leader()
		if l < 0 {
			return false, fmt.Errorf("no leader")
		}
		m, err := h.Members(l)
		if err != nil {
			return false, err
		}
		var got []int
		for _, i := range h.ServerNodes() {
			line := m[h.Nodes[i].Name]
			if hasField(line, "voter") || hasField(line, "witness") {
				got = append(got, i)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			var lines []string
			for _, v := range m {
				lines = append(lines, v)
			}
			sort.Strings(lines)
			return false, fmt.Errorf("voters %v; skiff members:\n%s", got, strings.Join(lines, "\n"))
		}
		return true, nil
	})
}

// TestHACluster: one cluster of 3 servers, 2 agents and a spare server,
// through phases that each leave it whole for the next:
//
//   - failover: kill -9 of the leader: a new leader is elected, a pod
//     deleted while the old one is dead is replaced by the new leader's
//     controllers, the agents' other pods keep their processes, and the
//     agents' nat rules and pod processes do not change during the
//     election; the killed server rejoins;
//   - partition 2|1 with the leader and an agent on the minority side: the
//     majority elects a leader and acknowledges writes, the cut-off server
//     answers writes with 503 no_quorum and a message that says so, the
//     minority agent keeps its pods running, and after healing the server
//     catches up and the agent is Ready again;
//   - add/remove: while clients write and CAS (history checked by
//     porcupine, no acknowledged write lost), the spare joins as a 4th
//     voter; `skiff server remove` refuses a running follower, and takes
//     it out once it is killed and the gossip has found it failed;
//   - snapshot: `skiff snapshot save`, every server killed and its data
//     dir destroyed, `skiff snapshot restore` into a fresh first server:
//     the apps, services and nodes come back (agents Ready, pods ready,
//     and a scale-up runs new pods on both agents through it), and a
//     second server joins it again.
func TestHACluster(t *testing.T) {
	requireHA(t)
	h := NewHA(t, HAOptions{Servers: 3, Spares: 1, Agents: 2})
	l := h.WaitLeader(60 * time.Second)
	h.ApplyOn(l, DemoManifest(4))
	pods := h.WaitAppReadyHA("web", 4, appTimeout)
	on := h.podsOn(pods)
	for _, a := range h.Agents() {
		if len(on[a]) == 0 {
			t.Fatalf("no pod on agent %d: %s", a, podSummary(pods))
		}
	}
	removed := -1
	if !h.phase(t, "failover", func(t *testing.T) { haFailover(t, h, pods) }) {
		return
	}
	if !h.phase(t, "partition", func(t *testing.T) { haPartition(t, h) }) {
		return
	}
	if !h.phase(t, "addremove", func(t *testing.T) { removed = haAddRemove(t, h) }) {
		return
	}
	h.phase(t, "snapshot", func(t *testing.T) { haSnapshot(t, h, removed) })
}

func haFailover(t *testing.T, h *HA, pods []api.Pod) {
	old := h.WaitLeader(30 * time.Second)
	rules, procs := map[int]string{}, map[int]string{}
	for _, a := range h.Agents() {
		// The agents' rules have caught up with the pods before they are
		// taken as what must not change.
		h.WaitLBHolds(a, pods, 30*time.Second)
		rules[a], procs[a] = h.natRules(a), h.appProcsOn(a)
	}
	pids := ContainerPIDs(pods)
	victim := pods[0]
	start := time.Now()
	h.KillServer(old)
	t.Logf("killed the leader, server %d", old)
	// Until a survivor accepts the delete: the agents' rules and pod
	// processes stay as they were.
	survivors := others(h, old)
	var accepted RawResult
	tries, checks := 0, 0
	h.WaitFor("a survivor to accept the delete of pod "+victim.Name, 60*time.Second, func() (bool, error) {
		for _, a := range h.Agents() {
			if got := h.natRules(a); got != rules[a] {
				t.Fatalf("agent %d's nat rules changed during the election:\nbefore:\n%s\nafter:\n%s", a, rules[a], got)
			}
			if got := h.appProcsOn(a); got != procs[a] {
				t.Fatalf("agent %d's pod processes changed during the election: %s → %s", a, procs[a], got)
			}
		}
		checks++
		s := survivors[tries%len(survivors)]
		tries++
		if !h.Nodes[s].Running() {
			return false, nil
		}
		accepted = h.Raw(s, http.MethodDelete, "/v1/pods/"+victim.Name, nil, 3*time.Second)
		if accepted.Err == nil && accepted.Status/100 == 2 {
			return true, nil
		}
		return false, fmt.Errorf("delete on server %d: %s %s", s, refusal(accepted), accepted.Msg)
	})
	t.Logf("writes accepted again %s after the kill (%d checks of the agents' rules and processes, unchanged)", time.Since(start).Round(time.Millisecond), checks)
	nl := h.WaitLeader(30*time.Second, old)
	t.Logf("new leader: server %d", nl)
	// The new leader's controllers replace the pod.
	var now []api.Pod
	h.WaitFor("the deleted pod replaced", appTimeout, func() (bool, error) {
		p, err := h.readyPodsOn(nl, "web", "web", 4)
		if err != nil {
			return false, err
		}
		for _, x := range p {
			if x.Name == victim.Name {
				return false, fmt.Errorf("pod %s still there", victim.Name)
			}
		}
		now = p
		return true, nil
	})
	// The other pods were never restarted.
	after := ContainerPIDs(now)
	for k, pid := range pids {
		if strings.HasPrefix(k, victim.Name+"/") {
			continue
		}
		if after[k] != pid {
			t.Errorf("container %s: pid %d before the failover, %d after", k, pid, after[k])
		}
	}
	for _, a := range h.Agents() {
		h.WaitAgentReady(a, 30*time.Second)
	}
	h.RestartServer(old)
	for _, s := range h.ServerNodes()[:3] {
		h.WaitKnowsLeader(s, 30*time.Second)
	}
}

func haPartition(t *testing.T, h *HA) {
	l := h.WaitLeader(30 * time.Second)
	maj := others(h, l)[:2] // the spare has not started
	// The site splits: the old leader and the first agent on one side,
	// the other two servers and the second agent on the other.
	agentMin, agentMaj := h.Agents()[0], h.Agents()[1]
	procsMin := h.appProcsOn(agentMin)
	if procsMin == "" {
		t.Fatalf("no pod runs on agent %d", agentMin)
	}
	h.Partition([]int{l, agentMin}, append(slices.Clone(maj), agentMaj))
	healed := false
	defer func() {
		if !healed {
			h.HealPartitions()
		}
	}()
	// The majority elects a leader and acknowledges a write.
	acker := h.putConfigAcked(maj[0], "part-1", "majority", 60*time.Second)
	if acker == l {
		t.Fatalf("the cut-off old leader %d acknowledged a write", l)
	}
	// The old leader, alone, refuses writes with a clear no_quorum error.
	var r RawResult
	h.WaitFor("the cut-off server to answer no_quorum", 30*time.Second, func() (bool, error) {
		r = h.Raw(l, http.MethodPut, "/v1/configs/part-2", configBody("part-2", "minority", 0), 5*time.Second)
		if r.Status/100 == 2 {
			t.Fatalf("the cut-off server %d acknowledged a write: %s", l, r.Body)
		}
		return r.Status == http.StatusServiceUnavailable && r.Code == "no_quorum", fmt.Errorf("%s %s", refusal(r), r.Msg)
	})
	if !strings.Contains(strings.ToLower(r.Msg), "quorum") && !strings.Contains(strings.ToLower(r.Msg), "majority") {
		t.Errorf("the no_quorum message does not say why: %q", r.Msg)
	}
	t.Logf("minority answer: 503 %s: %s", r.Code, r.Msg)
	// The minority side keeps its pods running.
	if got := h.appProcsOn(agentMin); got != procsMin {
		t.Errorf("agent %d on the minority side: pod processes %s before the partition, %s during it", agentMin, procsMin, got)
	}
	h.HealPartitions()
	healed = true
	h.WaitAgentReady(agentMin, 60*time.Second)
	h.WaitAppReadyHA("web", 4, appTimeout)
	h.WaitFor("the healed server to catch up", 30*time.Second, func() (bool, error) {
		v, err := h.localConfig(l, "part-1")
		return v == "majority", err
	})
	h.WaitKnowsLeader(l, 30*time.Second)
	if v, err := h.localConfig(acker, "part-2"); err == nil {
		t.Errorf("the refused minority write is in the store: %q", v)
	}
}

func haAddRemove(t *testing.T, h *HA) int {
	spare := h.Spare(0)
	var mu sync.Mutex
	live := []int{0, 1, 2}
	servers := func() []int {
		mu.Lock()
		defer mu.Unlock()
		return append([]int(nil), live...)
	}
	hist := newHistory()
	w := newWorkload(h, hist, 4, linearKeys, servers)
	w.Start()
	stopped := false
	defer func() {
		if !stopped {
			w.Stop()
		}
	}()
	waitOps(t, h, w, 30)
	h.StartServer(spare)
	h.WaitVoters([]int{0, 1, 2, spare}, 60*time.Second)
	mu.Lock()
	live = append(live, spare)
	mu.Unlock()
	waitOps(t, h, w, 30)
	l := h.WaitLeader(30 * time.Second)
	victim := -1
	for _, s := range []int{1, 2} {
		if s != l {
			victim = s
			break
		}
	}
	mu.Lock()
	live = []int{}
	for _, s := range []int{0, 1, 2, spare} {
		if s != victim {
			live = append(live, s)
		}
	}
	mu.Unlock()
	name := h.Nodes[victim].Name
	// A running server is refused: it would ask to be added back at once.
	if out, err := h.CLI(l, "server", "remove", name); err == nil || !strings.Contains(out, "is alive in the gossip") {
		t.Fatalf("server remove of the running server %d: %v %s, want it refused as alive", victim, err, out)
	}
	h.WaitVoters([]int{0, 1, 2, spare}, 10*time.Second)
	// A dead one is taken out at once (well before server_remove_after).
	h.KillServer(victim)
	h.WaitFor(name+" failed in the gossip", 30*time.Second, func() (bool, error) {
		m, err := h.Members(l)
		if err != nil || !hasField(m[name], "failed") {
			return false, fmt.Errorf("%v %s", err, m[name])
		}
		return true, nil
	})
	h.CLIOn(l, "server", "remove", name)
	h.WaitVoters(servers(), 60*time.Second)
	waitOps(t, h, w, 30)
	w.Stop()
	stopped = true
	finishHistory(t, h, hist, w)
	return victim
}

func haSnapshot(t *testing.T, h *HA, removed int) {
	l := h.WaitLeader(30 * time.Second)
	file := filepath.Join(h.dir, "backup.skiff")
	t.Log(strings.TrimSpace(h.CLIOn(l, "snapshot", "save", file)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	apps, err := h.Client(l).ListApps(ctx)
	if err != nil {
		t.Fatal(err)
	}
	svcs, err := h.Client(l).ListServices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := h.Client(l).ListNodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := func(kind string) []string {
		var out []string
		switch kind {
		case "app":
			for _, a := range apps.Items {
				out = append(out, a.Name)
			}
		case "service":
			for _, s := range svcs.Items {
				out = append(out, s.Name)
			}
		case "node":
			for _, n := range nodes.Items {
				out = append(out, n.Name)
			}
		}
		sort.Strings(out)
		return out
	}
	wantApps, wantSvcs, wantNodes := names("app"), names("service"), names("node")
	// Destroy every server.
	for _, s := range h.ServerNodes() {
		h.KillServer(s)
		if err := os.RemoveAll(h.Nodes[s].DataDir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(h.Nodes[s].DataDir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	first := h.ServerNodes()[0]
	if err := os.RemoveAll(h.Nodes[first].DataDir); err != nil {
		t.Fatal(err)
	}
	if out, err := runSkiff("snapshot", "restore", file, "--data-dir", h.Nodes[first].DataDir); err != nil {
		t.Fatalf("skiff snapshot restore: %v\n%s", err, out)
	}
	h.StartServer(first)
	h.WaitLeader(60 * time.Second)
	for _, a := range h.Agents() {
		h.WaitAgentReady(a, 90*time.Second)
	}
	h.WaitAppReadyHA("web", 4, appTimeout)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	apps, err = h.Client(first).ListApps(ctx2)
	if err != nil {
		t.Fatal(err)
	}
	svcs, err = h.Client(first).ListServices(ctx2)
	if err != nil {
		t.Fatal(err)
	}
	nodes, err = h.Client(first).ListNodes(ctx2)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		kind string
		want []string
	}{{"app", wantApps}, {"service", wantSvcs}, {"node", wantNodes}} {
		if got := names(c.kind); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%ss after restore: %v, want %v", c.kind, got, c.want)
		}
	}
	// The restored objects say Ready from the backup: prove the agents
	// really talk to the restored server by scaling up: the new pods run
	// on them and report ready through it.
	h.CLIOn(first, "scale", "app", "web", "--replicas", "6")
	pods := h.WaitAppReadyHA("web", 6, appTimeout)
	for _, a := range h.Agents() {
		if len(h.podsOn(pods)[a]) == 0 {
			t.Errorf("no pod on agent %d after restore and scale: %s", a, podSummary(pods))
		}
	}
	// Grow again: a fresh server joins the restored one.
	grow := -1
	for _, s := range h.ServerNodes()[1:] {
		if s != removed {
			grow = s
			break
		}
	}
	h.StartServer(grow)
	h.WaitVoters([]int{first, grow}, 60*time.Second)
}

// runSkiff runs the built skiff with args (no API address) and returns its
// combined output.
func runSkiff(args ...string) (string, error) {
	out, err := exec.Command(bin.skiff, args...).CombinedOutput()
	return string(out), err
}
