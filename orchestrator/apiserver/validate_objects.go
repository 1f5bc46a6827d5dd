package apiserver

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

// The API's own write paths (pods, pod status, nodes, events) are checked
// here before anything is written: the objects that the TOML decoder never
// sees are still read by the scheduler, the agents and the runtime, which
// take container names as file names and cpu as an int64 of millicores.

// Bounds of what agents and controllers report.
const (
	maxReasonLen  = 128
	maxMessageLen = 4 << 10
	maxSourceLen  = 253
	maxObjectName = 253
	maxAddresses  = 16
	maxConditions = 16
	// A node of more than 65536 cores, 1Pi of memory or 100000 pods is a
	// bug or a lie; below these the scheduler's sums stay far from
	// overflowing an int64.
	maxNodeMilliCPU = 65536 * 1000
	maxNodeMemory   = 1 << 50
	maxNodePods     = 100000
)

// objectNameRE is the form of any stored object's name: a DNS subdomain
// (pod names add "-hash-xxxxx" to their app's).
var objectNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)

func validObjectName(s string) bool {
	return len(s) <= maxObjectName && objectNameRE.MatchString(s) && !strings.Contains(s, "..")
}

// fieldErrs collects the field errors of one request body.
type fieldErrs []api.FieldDetail

func (f *fieldErrs) add(field, format string, args ...any) {
	*f = append(*f, api.FieldDetail{Field: field, Message: fmt.Sprintf(format, args...)})
}

// addErr adds configs' verdict err (an ErrorList) to f.
func (f *fieldErrs) addErr(err error) error {
	var l configs.ErrorList
	switch {
	case errors.As(err, &l):
		*f = append(*f, fieldDetails(l)...)
	case err != nil:
		return err
	}
	return nil
}

func (f fieldErrs) err() error {
	if len(f) == 0 {
		return nil
	}
	return invalidFields(f)
}

// checkText bounds a free-text field of a report.
func (f *fieldErrs) checkText(field, s string, max int) {
	if len(s) > max {
		f.add(field, "is %d bytes long (at most %d)", len(s), max)
	}
}

// podTemplate returns the fields of pod spec ps that an app's template
// has, for configs.ValidatePod.
func podTemplate(ps *api.PodSpec) *configs.AppSpec {
	return &configs.AppSpec{
		Restart:          ps.Restart,
		NodeSelector:     ps.NodeSelector,
		TerminationGrace: ps.TerminationGrace,
		Containers:       ps.Containers,
		Volumes:          ps.Volumes,
	}
}

// validatePod checks a whole pod written through the API: its template by
// the rules of an app's (configs.ValidatePod, with field paths
// "pod.NAME...."), its app and node names, its status, and the server's
// host volume policy.
func (s *Server) validatePod(p *api.Pod) error {
	var f fieldErrs
	tmpl := podTemplate(&p.Spec)
	if err := f.addErr(configs.ValidatePod(p.Name, tmpl)); err != nil {
		return err
	}
	switch {
	case p.Spec.App == "":
		f.add("spec.app", "a pod needs its app")
	case !configs.ValidName(p.Spec.App):
		f.add("spec.app", "%q is not a valid app name", p.Spec.App)
	}
	if p.Spec.Node != "" && !configs.ValidName(p.Spec.Node) {
		f.add("spec.node", "%q is not a valid node name", p.Spec.Node)
	}
	f.checkText("spec.template_hash", p.Spec.TemplateHash, 64)
	f = append(f, s.hostPathDetails("pod."+p.Name, tmpl)...)
	f.checkPodStatus(&p.Status, p.Spec.Containers)
	return f.err()
}

// validatePodStatus checks a status reported for pod p.
func validatePodStatus(st *api.PodStatus, p *api.Pod) error {
	var f fieldErrs
	f.checkPodStatus(st, p.Spec.Containers)
	return f.err()
}

var podPhases = []string{"", api.PodPending, api.PodRunning, api.PodSucceeded, api.PodFailed, api.PodUnknown}

var containerStates = []string{"", "waiting", "running", "exited"}

// checkPodStatus checks st against the pod's containers.
func (f *fieldErrs) checkPodStatus(st *api.PodStatus, containers map[string]*configs.ContainerSpec) {
	if !slices.Contains(podPhases, st.Phase) {
		f.add("status.phase", "%q is not a pod phase (%s)", st.Phase, strings.Join(podPhases[1:], ", "))
	}
	if st.IP != "" {
		if ip := net.ParseIP(st.IP); ip == nil || ip.To4() == nil {
			f.add("status.ip", "%q is not an IPv4 address", st.IP)
		}
	}
	f.checkText("status.reason", st.Reason, maxReasonLen)
	f.checkText("status.message", st.Message, maxMessageLen)
	seen := map[string]bool{}
	for i, c := range st.Containers {
		p := fmt.Sprintf("status.containers[%d]", i)
		switch _, ok := containers[c.Name]; {
		case !ok:
			f.add(p+".name", "%q is not a container of the pod", c.Name)
		case seen[c.Name]:
			f.add(p+".name", "%q is reported twice", c.Name)
		}
		seen[c.Name] = true
		if !slices.Contains(containerStates, c.State) {
			f.add(p+".state", "%q is not a container state (%s)", c.State, strings.Join(containerStates[1:], ", "))
		}
		if c.Restarts < 0 {
			f.add(p+".restarts", "must be >= 0")
		}
		if c.PID < 0 {
			f.add(p+".pid", "must be >= 0")
		}
		f.checkText(p+".reason", c.Reason, maxReasonLen)
		f.checkText(p+".message", c.Message, maxMessageLen)
	}
}

// validateNode checks what a node registers and reports. Its pod CIDR is
// not checked: the server keeps or allocates it (allocatePodCIDR),
// whatever the body says.
func validateNode(n *api.Node) error {
	var f fieldErrs
	if err := f.addErr(configs.ValidateLabels("spec.labels", n.Spec.Labels)); err != nil {
		return err
	}
	f.checkResources("status.capacity", n.Status.Capacity)
	f.checkResources("status.allocatable", n.Status.Allocatable)
	if len(n.Status.Addresses) > maxAddresses {
		f.add("status.addresses", "has %d addresses (at most %d)", len(n.Status.Addresses), maxAddresses)
	}
	for i, a := range n.Status.Addresses {
		if net.ParseIP(a) == nil {
			f.add(fmt.Sprintf("status.addresses[%d]", i), "%q is not an IP address", a)
		}
	}
	if a := n.Status.APIAddr; a != "" {
		if host, _, err := net.SplitHostPort(a); err != nil || len(a) > maxObjectName || strings.ContainsAny(host, "/ ") {
			f.add("status.api_addr", "%q is not a host:port", a)
		}
	}
	if len(n.Status.Conditions) > maxConditions {
		f.add("status.conditions", "has %d conditions (at most %d)", len(n.Status.Conditions), maxConditions)
	}
	for i, c := range n.Status.Conditions {
		p := fmt.Sprintf("status.conditions[%d]", i)
		if c.Type == "" || len(c.Type) > maxReasonLen {
			f.add(p+".type", "must be 1 to %d bytes long", maxReasonLen)
		}
		f.checkText(p+".reason", c.Reason, maxReasonLen)
		f.checkText(p+".message", c.Message, maxMessageLen)
	}
	return f.err()
}

func (f *fieldErrs) checkResources(p string, r api.Resources) {
	if r.MilliCPU < 0 || r.MilliCPU > maxNodeMilliCPU {
		f.add(p+".milli_cpu", "%d is out of range 0-%d", r.MilliCPU, maxNodeMilliCPU)
	}
	if r.Memory < 0 || r.Memory > maxNodeMemory {
		f.add(p+".memory", "%d is out of range 0-%d (1Pi)", r.Memory, int64(maxNodeMemory))
	}
	if r.Pods < 0 || r.Pods > maxNodePods {
		f.add(p+".pods", "%d is out of range 0-%d", r.Pods, maxNodePods)
	}
}

var eventKinds = []string{api.KindNode, api.KindApp, api.KindPod, api.KindService, api.KindEndpoints}

// validateEvent checks an event posted through the API.
func validateEvent(ev *api.Event) error {
	var f fieldErrs
	kind, name, ok := strings.Cut(ev.Object, "/")
	switch {
	case !ok || !slices.Contains(eventKinds, kind):
		f.add("object", "%q: want kind/name, kind one of %s", trimmed(ev.Object), strings.Join(eventKinds, ", "))
	case !validObjectName(name):
		f.add("object", "%q: %q is not a valid object name", trimmed(ev.Object), trimmed(name))
	}
	if ev.Type != api.EventNormal && ev.Type != api.EventWarning {
		f.add("type", "type %q: want Normal or Warning", trimmed(ev.Type))
	}
	switch {
	case ev.Reason == "":
		f.add("reason", "reason: must not be empty")
	default:
		f.checkText("reason", ev.Reason, maxReasonLen)
	}
	f.checkText("message", ev.Message, maxMessageLen)
	f.checkText("source", ev.Source, maxSourceLen)
	return f.err()
}

// trimmed shortens s for an error message.
func trimmed(s string) string {
	if len(s) > 64 {
		return s[:61] + "..."
	}
	return s
}
