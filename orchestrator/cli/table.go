package cli

import (
	"bytes"
	"encoding/json"
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
)

// Output formats of get.
const (
	FormatTable = "table"
	FormatWide  = "wide"
	FormatJSON  = "json"
)

// Kinds lists the kinds get knows, as typed on the command line.
var Kinds = []string{api.KindNode, api.KindApp, api.KindPod, api.KindService, api.KindEndpoints, api.KindEvent,
	api.KindConfig, api.KindSecret}

// kindAliases maps what a user may type to a kind.
var kindAliases = map[string]string{
	"node": api.KindNode, "nodes": api.KindNode, "no": api.KindNode,
	"app": api.KindApp, "apps": api.KindApp,
	"pod": api.KindPod, "pods": api.KindPod, "po": api.KindPod,
	"service": api.KindService, "services": api.KindService, "svc": api.KindService,
	"endpoint": api.KindEndpoints, "endpoints": api.KindEndpoints, "ep": api.KindEndpoints,
	"event": api.KindEvent, "events": api.KindEvent, "ev": api.KindEvent,
	"config": api.KindConfig, "configs": api.KindConfig, "cm": api.KindConfig,
	"secret": api.KindSecret, "secrets": api.KindSecret,
}

// ParseKind returns the kind a user typed ("pod", "svc", "nodes"...).
func ParseKind(s string) (string, error) {
	if k, ok := kindAliases[strings.ToLower(s)]; ok {
		return k, nil
	}
	return "", fmt.Errorf("unknown kind %q: want one of %s", s, strings.Join(Kinds, ", "))
}

// ParseFormat checks an -o value.
func ParseFormat(s string) (string, error) {
	switch s {
	case FormatTable, FormatWide, FormatJSON:
		return s, nil
	case "":
		return FormatTable, nil
	}
	return "", fmt.Errorf("unknown output format %q: want table, wide or json", s)
}

// Tables turns objects into rows. Some columns need other objects: the pods
// (a node's pod count) and the endpoints (a service's backends).
type Tables struct {
	Wide      bool
	Now       time.Time
	Pods      []api.Pod
	Endpoints []api.Endpoints
	// Load is the apps' measured load (GET /v1/stats); nil shows "-".
	Load map[string]api.AppLoad
}

// Header returns the column names of kind.
func (t *Tables) Header(kind string) []string {
	var h, wide []string
	switch kind {
	case api.KindNode:
		h = []string{"NAME", "STATUS", "ADDRESS", "POD-CIDR", "PODS", "CPU", "MEMORY", "AGE"}
		wide = []string{"CPU-CAPACITY", "MEMORY-CAPACITY", "LABELS"}
	case api.KindApp:
		h = []string{"NAME", "MODE", "READY", "UP-TO-DATE", "AUTOSCALE", "LOAD", "AGE"}
		wide = []string{"TEMPLATE", "IMAGES"}
	case api.KindPod:
		h = []string{"NAME", "APP", "NODE", "PHASE", "READY", "RESTARTS", "IP", "AGE"}
		wide = []string{"TEMPLATE", "CONTAINERS", "REASON"}
	case api.KindService:
		h = []string{"NAME", "TYPE", "CLUSTER-IP", "ADDRESS", "HOLDER", "PORT(S)", "NODE-PORT", "ENDPOINTS", "AGE"}
		wide = []string{"APP", "TARGET-PORT", "AFFINITY"}
	case api.KindEndpoints:
		h = []string{"NAME", "ENDPOINTS", "AGE"}
		wide = []string{"NODES"}
	case api.KindEvent:
		h = []string{"LAST-SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"}
		wide = []string{"SOURCE", "COUNT"}
	case api.KindConfig, api.KindSecret:
		h = []string{"NAME", "FILES", "SIZE", "AGE"}
		wide = []string{"VERSION"}
	}
	if t.Wide {
		h = append(h, wide...)
	}
	return h
}

// Row returns the cells of one object (a *api.Node, *api.App, ...): its
// kind's columns, then in wide output the wide ones. One function per kind
// computes them, as kubectl's printers do.
func (t *Tables) Row(obj api.Object) []string {
	var r, wide []string
	switch o := obj.(type) {
	case *api.Node:
		r, wide = t.nodeRow(o)
	case *api.App:
		r, wide = t.appRow(o)
	case *api.Pod:
		r, wide = t.podRow(o)
	case *api.Service:
		r, wide = t.serviceRow(o)
	case *api.Endpoints:
		r, wide = t.endpointsRow(o)
	case *api.Event:
		r, wide = t.eventRow(o)
	case *api.Config:
		r, wide = t.filesRow(o.Name, o.Status, o.Created, false)
	case *api.Secret:
		r, wide = t.filesRow(o.Name, o.Status, o.Created, true)
	default:
		return []string{obj.GetMeta().Name}
	}
	if t.Wide {
		r = append(r, wide...)
	}
	return r
}

// nodeRow: STATUS is Ready or NotReady, plus SchedulingDisabled when the
// node is cordoned; PODS counts the pods bound to it (not deleting), out of
// its allocatable pods when known.
func (t *Tables) nodeRow(o *api.Node) (r, wide []string) {
	status := "NotReady"
	if o.Ready() {
		status = "Ready"
	}
	if o.Spec.Unschedulable {
		status += ",SchedulingDisabled"
	}
	pods := strconv.Itoa(t.podsOn(o.Name))
	if o.Status.Allocatable.Pods > 0 {
		pods += "/" + strconv.Itoa(o.Status.Allocatable.Pods)
	}
	r = []string{o.Name, status, first(o.Status.Addresses), dash(o.Spec.PodCIDR), pods,
		FormatCPU(o.Status.Allocatable.MilliCPU), FormatBytes(o.Status.Allocatable.Memory), t.age(o.Created)}
	wide = []string{FormatCPU(o.Status.Capacity.MilliCPU), FormatBytes(o.Status.Capacity.Memory), FormatLabels(o.Spec.Labels)}
	return r, wide
}

// appRow: READY is ready out of desired replicas, or the ready count alone
// in per-node mode.
func (t *Tables) appRow(o *api.App) (r, wide []string) {
	mode, desired := AppDesired(o)
	ready := strconv.Itoa(o.Status.Ready)
	if desired >= 0 {
		ready += "/" + strconv.Itoa(desired)
	}
	r = []string{o.Name, mode, ready, strconv.Itoa(o.Status.Updated), AutoscaleCell(o), t.loadCell(o), t.age(o.Created)}
	wide = []string{dash(o.Status.TemplateHash), images(o.Spec.Containers)}
	return r, wide
}

// AutoscaleCell is "current→desired [min-max]" for an autoscaled app
// ("3→5 [1-8]", or "3 [1-8]" when they agree), "-" otherwise.
func AutoscaleCell(a *api.App) string {
	as := a.Spec.Autoscale
	if as == nil {
		return "-"
	}
	_, desired := AppDesired(a)
	cur := strconv.Itoa(a.Status.Replicas)
	if a.Status.Replicas != desired {
		cur += "→" + strconv.Itoa(desired)
	}
	return fmt.Sprintf("%s [%d-%d]", cur, as.Min, as.Max)
}

// loadCell is the app's measured load: requests per second over its
// services, and the CPU of its pods when it has a CPU target.
func (t *Tables) loadCell(a *api.App) string {
	l, ok := t.Load[a.Name]
	if !ok || l.Nodes == 0 {
		return "-"
	}
	s := FormatRate(l.RPS) + " req/s"
	if as := a.Spec.Autoscale; as != nil && as.TargetCPU > 0 {
		s += fmt.Sprintf(", %.2f cpu", l.CPU)
	}
	return s
}

// FormatRate prints a rate with 3 significant digits at most ("0.5",
// "41.2", "412", "4120").
func FormatRate(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// podRow: READY is ready containers out of the spec's, RESTARTS their sum.
func (t *Tables) podRow(o *api.Pod) (r, wide []string) {
	ready, total, restarts := 0, len(o.Spec.Containers), 0
	for _, c := range o.Status.Containers {
		if c.Ready {
			ready++
		}
		restarts += c.Restarts
	}
	r = []string{o.Name, o.Spec.App, dash(o.Spec.Node), PodPhase(o), fmt.Sprintf("%d/%d", ready, total),
		strconv.Itoa(restarts), dash(o.Status.IP), t.age(o.Created)}
	wide = []string{dash(o.Spec.TemplateHash), images(o.Spec.Containers), dash(o.Status.Reason)}
	return r, wide
}

// serviceRow: TYPE defaults to cluster; NODE-PORT is the one allocated,
// else the one asked for; ENDPOINTS counts the service's endpoints ("-"
// without an Endpoints object); TARGET-PORT defaults to the port. ADDRESS
// is a load-balancer service's LAN address ("<pending>" until the server
// gave one: it has no [lb] pools) and HOLDER the node that last reported
// announcing it ("<none>" until one did).
func (t *Tables) serviceRow(o *api.Service) (r, wide []string) {
	typ := o.Spec.Type
	if typ == "" {
		typ = configs.ServiceCluster
	}
	nodePort := "-"
	if o.Status.NodePort != 0 {
		nodePort = strconv.Itoa(o.Status.NodePort)
	} else if o.Spec.NodePort != 0 {
		nodePort = strconv.Itoa(o.Spec.NodePort)
	}
	eps := "-"
	if ep := t.endpointsOf(o.Name); ep != nil {
		eps = strconv.Itoa(len(ep.Endpoints))
	}
	target := o.Spec.TargetPort.String()
	if o.Spec.TargetPort.IsZero() {
		target = strconv.Itoa(o.Spec.Port)
	}
	addr, holder := "-", "-"
	if typ == configs.ServiceLoadBalancer {
		addr, holder = "<pending>", "<none>"
		if o.Status.Address != "" {
			addr = o.Status.Address
		}
		if o.Status.Holder != "" {
			holder = o.Status.Holder
		}
	}
	r = []string{o.Name, typ, dash(o.Status.ClusterIP), addr, holder, servicePorts(&o.Spec), nodePort, eps, t.age(o.Created)}
	wide = []string{o.Spec.App, target, dash(o.Spec.Affinity)}
	return r, wide
}

// endpointsRow: ENDPOINTS lists ip:port, the first 3 and a count of the
// rest unless wide; NODES the nodes they are on, sorted.
func (t *Tables) endpointsRow(o *api.Endpoints) (r, wide []string) {
	addrs := make([]string, len(o.Endpoints))
	nodes := map[string]bool{}
	for i, e := range o.Endpoints {
		addrs[i] = e.IP + ":" + strconv.Itoa(e.Port)
		nodes[e.Node] = true
	}
	list := "<none>"
	if len(addrs) > 0 {
		if !t.Wide && len(addrs) > 3 {
			list = strings.Join(addrs[:3], ",") + fmt.Sprintf(" + %d more", len(addrs)-3)
		} else {
			list = strings.Join(addrs, ",")
		}
	}
	r = []string{o.Name, list, t.age(o.Created)}
	wide = []string{dash(strings.Join(slices.Sorted(maps.Keys(nodes)), ","))}
	return r, wide
}

// eventRow: LAST-SEEN counts from the event's time (its creation when it
// has none); COUNT is at least 1.
func (t *Tables) eventRow(o *api.Event) (r, wide []string) {
	when := o.Time
	if when.IsZero() {
		when = o.Created
	}
	count := o.Count
	if count == 0 {
		count = 1
	}
	r = []string{t.age(when), o.Type, o.Reason, o.Object, o.Message}
	wide = []string{dash(o.Source), strconv.Itoa(count)}
	return r, wide
}

// markDeleted shows in a row of a watch that its object was deleted: the
// status column of nodes and pods says Deleted.
func (t *Tables) markDeleted(kind string, row []string) {
	switch kind {
	case api.KindNode:
		row[1] = "Deleted"
	case api.KindPod:
		row[3] = "Deleted"
	}
}

func (t *Tables) podsOn(node string) int {
	n := 0
	for i := range t.Pods {
		if t.Pods[i].Spec.Node == node && t.Pods[i].Spec.Deleting == nil {
			n++
		}
	}
	return n
}

func (t *Tables) endpointsOf(service string) *api.Endpoints {
	for i := range t.Endpoints {
		if t.Endpoints[i].Name == service {
			return &t.Endpoints[i]
		}
	}
	return nil
}

func (t *Tables) age(since time.Time) string {
	if since.IsZero() {
		return "<unknown>"
	}
	now := t.Now
	if now.IsZero() {
		now = time.Now()
	}
	return FormatAge(now.Sub(since))
}

// WriteTable writes rows under header, aligned in columns (kubectl style).
// Every cell goes through Escape: a tab or newline in a cell would break
// the columns, a control character the terminal.
func WriteTable(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	if header != nil {
		fmt.Fprintln(tw, strings.Join(escapeAll(header), "\t"))
	}
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(escapeAll(r), "\t"))
	}
	return tw.Flush()
}

// StreamTable writes rows one at a time as they come (get -w), padded to
// the widths of the rows seen so far, so that a stream of rows stays aligned
// without waiting for the last one.
type StreamTable struct {
	w      io.Writer
	widths []int
}

// NewStreamTable returns a StreamTable on w whose columns are at least as
// wide as those of the header and the first rows.
func NewStreamTable(w io.Writer, header []string, first [][]string) *StreamTable {
	s := &StreamTable{w: w}
	s.grow(escapeAll(header))
	for _, r := range first {
		s.grow(escapeAll(r))
	}
	return s
}

func (s *StreamTable) grow(r []string) {
	for i, c := range r {
		if i >= len(s.widths) {
			s.widths = append(s.widths, 0)
		}
		s.widths[i] = max(s.widths[i], len(c))
	}
}

// WriteRow writes one row, its cells through Escape.
func (s *StreamTable) WriteRow(r []string) error {
	r = escapeAll(r)
	s.grow(r)
	var b strings.Builder
	for i, c := range r {
		b.WriteString(c)
		if i < len(r)-1 {
			b.WriteString(strings.Repeat(" ", s.widths[i]-len(c)+3))
		}
	}
	b.WriteByte('\n')
	_, err := io.WriteString(s.w, b.String())
	return err
}

// WriteJSON writes v as indented JSON, its control characters escaped
// (see escapeJSON).
func WriteJSON(w io.Writer, v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	_, err := w.Write(escapeJSON(b.Bytes()))
	return err
}

// AppDesired returns an app's mode and desired replicas (-1 in per-node
// mode, where the count follows the nodes).
func AppDesired(a *api.App) (string, int) {
	if a.Spec.Mode == configs.ModePerNode {
		return configs.ModePerNode, -1
	}
	n := 1
	if a.Spec.Replicas != nil {
		n = *a.Spec.Replicas
	}
	if as := a.Spec.Autoscale; as != nil {
		// The autoscaler's count, which the app controller keeps.
		if st := a.Status.Autoscale; st != nil {
			n = st.Desired
		}
		n = min(max(n, as.Min), max(as.Max, as.Min))
	}
	return configs.ModeReplicas, n
}

// PodPhase is the phase shown for a pod: Terminating once it is deleting.
func PodPhase(p *api.Pod) string {
	if p.Spec.Deleting != nil {
		return "Terminating"
	}
	if p.Status.Phase == "" {
		return api.PodPending
	}
	return p.Status.Phase
}

func servicePorts(s *configs.ServiceSpec) string {
	proto := s.Protocol
	if proto == "" {
		proto = configs.ProtocolTCP
	}
	return fmt.Sprintf("%d/%s", s.Port, proto)
}

func images(cs map[string]*configs.ContainerSpec) string {
	if len(cs) == 0 {
		return "-"
	}
	s := make([]string, 0, len(cs))
	for _, name := range slices.Sorted(maps.Keys(cs)) {
		s = append(s, name+"="+cs[name].Image)
	}
	return strings.Join(s, ",")
}

func first(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return s[0]
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// filesRow: FILES lists each file with its size; a secret's show as
// "<redacted, N bytes>", never their content (which the API never sends
// to the CLI anyway).
func (t *Tables) filesRow(name string, st api.FilesStatus, created time.Time, secret bool) (r, wide []string) {
	var files []string
	for _, fn := range slices.Sorted(maps.Keys(st.Sizes)) {
		if secret {
			files = append(files, fn+"="+api.Redacted(st.Sizes[fn]))
		} else {
			files = append(files, fmt.Sprintf("%s (%d bytes)", fn, st.Sizes[fn]))
		}
	}
	r = []string{name, dash(strings.Join(files, ", ")), FormatBytes(int64(st.Size())), t.age(created)}
	wide = []string{dash(st.Version)}
	return r, wide
}
