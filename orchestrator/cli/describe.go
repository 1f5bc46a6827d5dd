package cli

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

// maxDescribeEvents is how many of an object's latest events describe shows.
const maxDescribeEvents = 20

// Describe prints a readable description of one node, app, pod or service
// with its recent events.
func Describe(ctx context.Context, c *client.Client, w io.Writer, kind, name string) error {
	d := &describer{now: time.Now()}
	switch kind {
	case api.KindNode:
		n, err := c.GetNode(ctx, name)
		if err != nil {
			return err
		}
		pods, err := c.ListPods(ctx, "", name)
		if err != nil {
			return err
		}
		d.node(n, pods.Items)
	case api.KindApp:
		a, err := c.GetApp(ctx, name)
		if err != nil {
			return err
		}
		pods, err := c.ListPods(ctx, name, "")
		if err != nil {
			return err
		}
		d.app(a, pods.Items)
	case api.KindPod:
		p, err := c.GetPod(ctx, name)
		if err != nil {
			return err
		}
		d.pod(p)
	case api.KindService:
		s, err := c.GetService(ctx, name)
		if err != nil {
			return err
		}
		ep, err := c.GetEndpoints(ctx, name)
		if err != nil && !client.IsNotFound(err) {
			return err
		}
		d.service(s, ep)
	default:
		return fmt.Errorf("cannot describe %s: want node, app, pod or service", kind)
	}
	events, err := c.ListEvents(ctx, kind+"/"+name)
	if err != nil {
		return err
	}
	d.events(events.Items)
	_, err = io.WriteString(w, d.b.String())
	return err
}

// describer builds a description: "Key:" lines aligned at one column and
// indented sections.
type describer struct {
	b   strings.Builder
	now time.Time
}

// kv, section and table escape what they print (see Escape): keys, values
// and cells may be the server's text.
func (d *describer) kv(indent int, key string, val any) {
	key = Escape(key)
	pad := max(1, 18-indent-len(key))
	fmt.Fprintf(&d.b, "%s%s:%s%s\n", strings.Repeat(" ", indent), key, strings.Repeat(" ", pad), Escape(fmt.Sprint(val)))
}

func (d *describer) section(title string) { fmt.Fprintf(&d.b, "%s:\n", Escape(title)) }

func (d *describer) table(indent int, header []string, rows [][]string) {
	if len(rows) == 0 {
		fmt.Fprintf(&d.b, "%s<none>\n", strings.Repeat(" ", indent))
		return
	}
	tw := tabwriter.NewWriter(&d.b, 0, 8, 3, ' ', 0)
	pre := strings.Repeat(" ", indent)
	fmt.Fprintln(tw, pre+strings.Join(escapeAll(header), "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, pre+strings.Join(escapeAll(r), "\t"))
	}
	tw.Flush()
}

func (d *describer) created(t time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return fmt.Sprintf("%s (%s ago)", t.Local().Format(time.RFC3339), FormatAge(d.now.Sub(t)))
}

func (d *describer) meta(m *api.Meta) {
	d.kv(0, "Name", m.Name)
	d.kv(0, "Revision", m.Revision)
	d.kv(0, "Created", d.created(m.Created))
}

func (d *describer) node(n *api.Node, pods []api.Pod) {
	d.meta(&n.Meta)
	d.kv(0, "Labels", FormatLabels(n.Spec.Labels))
	d.kv(0, "Addresses", dash(strings.Join(n.Status.Addresses, ", ")))
	d.kv(0, "API", dash(n.Status.APIAddr))
	d.kv(0, "Pod CIDR", dash(n.Spec.PodCIDR))
	d.kv(0, "Unschedulable", n.Spec.Unschedulable)
	d.section("Conditions")
	rows := [][]string{}
	for _, c := range n.Status.Conditions {
		rows = append(rows, []string{c.Type, strconv.FormatBool(c.Status), d.ago(c.LastHeartbeat), d.ago(c.LastChange), dash(c.Reason), dash(c.Message)})
	}
	d.table(2, []string{"TYPE", "STATUS", "HEARTBEAT", "CHANGED", "REASON", "MESSAGE"}, rows)
	d.section("Capacity")
	d.resources(n.Status.Capacity)
	d.section("Allocatable")
	d.resources(n.Status.Allocatable)
	var cpu, mem int64
	rows = [][]string{}
	for i := range pods {
		p := &pods[i]
		pc, pm := podRequests(p)
		cpu += pc
		mem += pm
		rows = append(rows, []string{p.Name, p.Spec.App, PodPhase(p), FormatCPU(pc), FormatBytes(pm), dash(p.Status.IP)})
	}
	d.kv(0, "Allocated", fmt.Sprintf("cpu %s of %s, memory %s of %s, %d pods",
		FormatCPU(cpu), FormatCPU(n.Status.Allocatable.MilliCPU), FormatBytes(mem), FormatBytes(n.Status.Allocatable.Memory), len(pods)))
	d.section("Pods")
	d.table(2, []string{"NAME", "APP", "PHASE", "CPU", "MEMORY", "IP"}, rows)
}

func (d *describer) resources(r api.Resources) {
	d.kv(2, "cpu", FormatCPU(r.MilliCPU))
	d.kv(2, "memory", FormatBytes(r.Memory))
	if r.Pods > 0 {
		d.kv(2, "pods", r.Pods)
	}
}

// podRequests sums the cpu (millicores) and memory its containers request.
func podRequests(p *api.Pod) (cpu, mem int64) {
	for _, c := range p.Spec.Containers {
		cpu += int64(c.CPU*1000 + 0.5)
		mem += int64(c.Memory)
	}
	return cpu, mem
}

func (d *describer) ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return FormatAge(d.now.Sub(t)) + " ago"
}

func (d *describer) app(a *api.App, pods []api.Pod) {
	d.meta(&a.Meta)
	mode, desired := AppDesired(a)
	d.kv(0, "Mode", mode)
	if desired >= 0 {
		d.kv(0, "Replicas", fmt.Sprintf("%d desired | %d updated | %d total | %d ready", desired, a.Status.Updated, a.Status.Replicas, a.Status.Ready))
	} else {
		d.kv(0, "Replicas", fmt.Sprintf("%d updated | %d total | %d ready", a.Status.Updated, a.Status.Replicas, a.Status.Ready))
	}
	d.kv(0, "Template", dash(a.Status.TemplateHash))
	if note := rolloutNote(a); note != "" {
		d.kv(0, "Rollout", note)
	}
	if pp := a.Status.Prepull; pp != nil && pp.TemplateHash == a.Status.TemplateHash {
		d.kv(0, "Pre-pull", pp.Summary())
	}
	if a.Spec.RestartedAt != "" {
		d.kv(0, "Restarted", a.Spec.RestartedAt)
	}
	d.kv(0, "Restart", dash(a.Spec.Restart))
	d.kv(0, "Node selector", FormatLabels(a.Spec.NodeSelector))
	if u := a.Spec.Update; u != nil {
		d.kv(0, "Update", fmt.Sprintf("max_surge %s, max_unavailable %s, auto_rollback %t, progress_deadline %s, prepull %t",
			intOr(u.MaxSurge, "default"), intOr(u.MaxUnavailable, "default"), u.AutoRollback, durOr(u.ProgressDeadline), u.Prepull))
	}
	if s := a.Spec.Autoscale; s != nil {
		window, tol := durOr(s.ScaleDownWindow), "default"
		if s.Tolerance > 0 {
			tol = fmt.Sprintf("%g", s.Tolerance)
		}
		d.kv(0, "Autoscale", fmt.Sprintf("min %d, max %d, target_rps %g, target_cpu %g, scale_down_window %s, tolerance %s",
			s.Min, s.Max, s.TargetRPS, s.TargetCPU, window, tol))
		d.kv(0, "Scaled", AutoscaleCell(a))
	}
	d.containers(a.Spec.Containers, nil)
	d.volumes(a.Spec.Volumes)
	d.section("Pods")
	rows := [][]string{}
	for i := range pods {
		p := &pods[i]
		rows = append(rows, []string{p.Name, dash(p.Spec.Node), PodPhase(p), strconv.FormatBool(p.Status.Ready), dash(p.Spec.TemplateHash), dash(p.Status.IP)})
	}
	d.table(2, []string{"NAME", "NODE", "PHASE", "READY", "TEMPLATE", "IP"}, rows)
	if st := a.Status.Autoscale; a.Spec.Autoscale != nil && st != nil {
		d.section("Scaling decisions")
		rows = [][]string{}
		for i := len(st.Decisions) - 1; i >= 0; i-- {
			dec := st.Decisions[i]
			rows = append(rows, []string{d.ago(dec.Time), fmt.Sprintf("%d → %d", dec.From, dec.To), dec.Message})
		}
		d.table(2, []string{"WHEN", "REPLICAS", "WHY"}, rows)
	}
	d.section("History")
	rows = [][]string{}
	for i, h := range a.Status.History {
		rows = append(rows, []string{strconv.Itoa(i + 1), h.TemplateHash, d.ago(h.Time), images(h.Spec.Containers)})
	}
	d.table(2, []string{"REVISION", "TEMPLATE", "WHEN", "IMAGES"}, rows)
}

func intOr(p *int, def string) string {
	if p == nil {
		return def
	}
	return strconv.Itoa(*p)
}

func durOr(v configs.Duration) string {
	if v == 0 {
		return "default"
	}
	return v.D().String()
}

func (d *describer) containers(cs map[string]*configs.ContainerSpec, status []api.ContainerStatus) {
	d.section("Containers")
	for _, name := range slices.Sorted(maps.Keys(cs)) {
		c := cs[name]
		fmt.Fprintf(&d.b, "  %s:\n", Escape(name))
		d.kv(4, "Image", c.Image)
		if len(c.Command) > 0 {
			d.kv(4, "Command", strings.Join(c.Command, " "))
		}
		if len(c.Args) > 0 {
			d.kv(4, "Args", strings.Join(c.Args, " "))
		}
		if len(c.Ports) > 0 {
			d.kv(4, "Ports", formatIntMap(c.Ports))
		}
		if len(c.HostPorts) > 0 {
			d.kv(4, "Host ports", formatIntMap(c.HostPorts))
		}
		d.kv(4, "Limits", fmt.Sprintf("cpu %s, memory %s", FormatCPU(int64(c.CPU*1000+0.5)), FormatBytes(int64(c.Memory))))
		if len(c.Env) > 0 {
			d.kv(4, "Env", FormatLabels(c.Env))
		}
		if len(c.Mounts) > 0 {
			d.kv(4, "Mounts", FormatLabels(c.Mounts))
		}
		for _, p := range []struct {
			name string
			p    *configs.Probe
		}{{"Readiness", c.Readiness}, {"Liveness", c.Liveness}, {"Startup", c.Startup}} {
			if p.p != nil {
				d.kv(4, p.name, formatProbe(p.p))
			}
		}
		for _, s := range status {
			if s.Name != name {
				continue
			}
			state := s.State
			if s.Reason != "" {
				state += " (" + s.Reason + ")"
			}
			if s.State == "exited" {
				state += fmt.Sprintf(", exit code %d", s.ExitCode)
			}
			d.kv(4, "State", state)
			if s.StartedAt != nil {
				d.kv(4, "Started", d.created(*s.StartedAt))
			}
			d.kv(4, "Ready", s.Ready)
			d.kv(4, "Restarts", s.Restarts)
			if s.Message != "" {
				d.kv(4, "Message", s.Message)
			}
		}
	}
}

func formatIntMap(m map[string]int) string {
	s := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		s = append(s, k+"="+strconv.Itoa(m[k]))
	}
	return strings.Join(s, ",")
}

func formatProbe(p *configs.Probe) string {
	var what string
	switch {
	case p.HTTPGet != "":
		what = "http-get :" + p.Port.String() + p.HTTPGet
	case p.TCP:
		what = "tcp :" + p.Port.String()
	case len(p.Exec) > 0:
		what = "exec " + strings.Join(p.Exec, " ")
	}
	return fmt.Sprintf("%s delay=%s period=%s timeout=%s failure=%d success=%d",
		what, p.InitialDelay.D(), p.Period.D(), p.Timeout.D(), p.FailureThreshold, p.SuccessThreshold)
}

func (d *describer) volumes(vs map[string]*configs.VolumeSpec) {
	if len(vs) == 0 {
		return
	}
	d.section("Volumes")
	for _, name := range slices.Sorted(maps.Keys(vs)) {
		v := vs[name]
		desc := v.Type
		if v.Path != "" {
			desc += " " + v.Path
		}
		if v.Size != 0 {
			desc += " size " + FormatBytes(int64(v.Size))
		}
		d.kv(2, name, desc)
	}
}

func (d *describer) pod(p *api.Pod) {
	d.meta(&p.Meta)
	d.kv(0, "App", p.Spec.App)
	d.kv(0, "Template", dash(p.Spec.TemplateHash))
	d.kv(0, "Node", dash(p.Spec.Node))
	d.kv(0, "Phase", PodPhase(p))
	d.kv(0, "Ready", p.Status.Ready)
	d.kv(0, "IP", dash(p.Status.IP))
	if p.Status.StartedAt != nil {
		d.kv(0, "Started", d.created(*p.Status.StartedAt))
	}
	if p.Status.Reason != "" {
		d.kv(0, "Reason", p.Status.Reason)
	}
	if p.Status.Message != "" {
		d.kv(0, "Message", p.Status.Message)
	}
	if p.Spec.Deleting != nil {
		d.kv(0, "Deleting since", d.created(*p.Spec.Deleting))
	}
	d.kv(0, "Restart", dash(p.Spec.Restart))
	d.kv(0, "Termination", durOr(p.Spec.TerminationGrace))
	d.kv(0, "Node selector", FormatLabels(p.Spec.NodeSelector))
	d.containers(p.Spec.Containers, p.Status.Containers)
	d.volumes(p.Spec.Volumes)
}

func (d *describer) service(s *api.Service, ep *api.Endpoints) {
	d.meta(&s.Meta)
	typ := s.Spec.Type
	if typ == "" {
		typ = configs.ServiceCluster
	}
	d.kv(0, "Type", typ)
	d.kv(0, "App", s.Spec.App)
	d.kv(0, "Cluster IP", dash(s.Status.ClusterIP))
	d.kv(0, "Port", servicePorts(&s.Spec))
	target := s.Spec.TargetPort.String()
	if s.Spec.TargetPort.IsZero() {
		target = strconv.Itoa(s.Spec.Port)
	}
	d.kv(0, "Target port", target)
	if np := max(s.Status.NodePort, s.Spec.NodePort); np != 0 {
		d.kv(0, "Node port", np)
	}
	if typ == configs.ServiceLoadBalancer {
		d.kv(0, "Address", dash(s.Status.Address))
		d.kv(0, "Holder", dash(s.Status.Holder))
		if want := s.Spec.WantAddress(); want != "" {
			d.kv(0, "Address asked", want)
		}
	}
	d.kv(0, "Affinity", dash(s.Spec.Affinity))
	d.section("Endpoints")
	rows := [][]string{}
	if ep != nil {
		for _, e := range ep.Endpoints {
			rows = append(rows, []string{e.Pod, e.Node, e.IP + ":" + strconv.Itoa(e.Port)})
		}
	}
	d.table(2, []string{"POD", "NODE", "ADDRESS"}, rows)
}

func (d *describer) events(evs []api.Event) {
	sortEvents(evs)
	if len(evs) > maxDescribeEvents {
		evs = evs[len(evs)-maxDescribeEvents:]
	}
	d.section("Events")
	rows := [][]string{}
	for _, e := range evs {
		when := e.Time
		if when.IsZero() {
			when = e.Created
		}
		reason := e.Reason
		if e.Count > 1 {
			reason += fmt.Sprintf(" (x%d)", e.Count)
		}
		rows = append(rows, []string{d.ago(when), e.Type, reason, dash(e.Source), e.Message})
	}
	d.table(2, []string{"AGE", "TYPE", "REASON", "FROM", "MESSAGE"}, rows)
}

func sortEvents(evs []api.Event) {
	slices.SortStableFunc(evs, func(a, b api.Event) int { return a.Time.Compare(b.Time) })
}
