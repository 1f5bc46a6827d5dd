// Package api is skiff's object model: the objects the store keeps and the
// HTTP API serves (nodes, apps, pods, services, endpoints, events), and the
// wire formats around them (watch events, errors).
package api

import (
	"encoding/json"
	"time"

	"github.com/skiff-edge/skiff/configs"
)

// Kinds of objects in the store. The kind is also the API path segment.
const (
	KindNode      = "nodes"
	KindApp       = "apps"
	KindPod       = "pods"
	KindService   = "services"
	KindEndpoints = "endpoints"
	KindEvent     = "events"
)

// Meta is carried by every object.
type Meta struct {
	Name string `json:"name"`
	// Revision is the store's revision at the object's last write. A write
	// that carries a non-zero Revision succeeds only if it still matches.
	Revision int64 `json:"revision,omitempty"`
	// Created is set by the store on the first write.
	Created time.Time `json:"created,omitempty"`
}

// Resources is an amount of CPU, memory and pods.
type Resources struct {
	// MilliCPU is thousandths of a core.
	MilliCPU int64 `json:"milli_cpu"`
	Memory   int64 `json:"memory"`
	Pods     int   `json:"pods,omitempty"`
}

// Node is a machine that runs pods.
type Node struct {
	Meta
	Spec   NodeSpec   `json:"spec"`
	Status NodeStatus `json:"status"`
}

// NodeSpec is what the node's agent registers.
type NodeSpec struct {
	Labels map[string]string `json:"labels,omitempty"`
	// PodCIDR is the node's slice of the cluster CIDR (a /24), given by the
	// server at registration.
	PodCIDR string `json:"pod_cidr,omitempty"`
	// Unschedulable keeps new pods off the node.
	Unschedulable bool `json:"unschedulable,omitempty"`
}

// Node condition types.
const (
	NodeReady = "Ready"
)

// Condition is one observed condition of an object.
type Condition struct {
	Type          string    `json:"type"`
	Status        bool      `json:"status"`
	Reason        string    `json:"reason,omitempty"`
	Message       string    `json:"message,omitempty"`
	LastHeartbeat time.Time `json:"last_heartbeat,omitempty"`
	LastChange    time.Time `json:"last_change,omitempty"`
}

// NodeStatus is what the node's agent reports.
type NodeStatus struct {
	Capacity    Resources `json:"capacity"`
	Allocatable Resources `json:"allocatable"`
	// Addresses of the node; the first is the advertise address.
	Addresses  []string    `json:"addresses,omitempty"`
	APIAddr    string      `json:"api_addr,omitempty"`
	Conditions []Condition `json:"conditions,omitempty"`
}

// Ready reports whether the node's Ready condition is true.
func (n *Node) Ready() bool {
	for _, c := range n.Status.Conditions {
		if c.Type == NodeReady {
			return c.Status
		}
	}
	return false
}

// App is a deployed app: a spec from a manifest and the controller's view of
// its pods.
type App struct {
	Meta
	Spec   configs.AppSpec `json:"spec"`
	Status AppStatus       `json:"status"`
}

// AppStatus is kept by the app controller.
type AppStatus struct {
	// TemplateHash identifies the current pod template revision.
	TemplateHash string `json:"template_hash,omitempty"`
	Replicas     int    `json:"replicas"`
	Ready        int    `json:"ready"`
	Updated      int    `json:"updated"`
	// History holds earlier pod templates for rollback, newest last.
	History []AppRevision `json:"history,omitempty"`
	// Rollout is where the change to the current template stands.
	Rollout *RolloutStatus `json:"rollout,omitempty"`
	// Autoscale is the autoscaler's state, for apps with autoscale set
	// (see load.go).
	Autoscale *AutoscaleStatus `json:"autoscale,omitempty"`
	// Prepull is the pre-pull of the current template's images, for apps
	// whose update asks for it (see prepull.go).
	Prepull *PrepullStatus `json:"prepull,omitempty"`
}

// RolloutStatus is where the change to an app's current pod template
// stands. It lives in the store, not in the app controller's memory, so that
// what the controller decided holds across a restart of the server: that
// this revision is a rollback (which is never rolled back in turn) and that
// its progress deadline passed. A rollback writes it in the same write as
// the spec; the app controller keeps it from then on.
type RolloutStatus struct {
	// TemplateHash is the template the rollout brings in. A spec with
	// another template is a newer change: this rollout is over.
	TemplateHash string `json:"template_hash"`
	// RollbackOf is, when the rollout is a rollback (asked for or
	// automatic), the template it went back from; empty otherwise.
	RollbackOf string `json:"rollback_of,omitempty"`
	// Progressed is when the rollout last made progress: when it started,
	// or when one more pod of its template became ready. The progress
	// deadline counts from it. Zero once no pod of an older template is
	// left (the rollout is complete).
	Progressed time.Time `json:"progressed,omitzero"`
	// ReadyUpdated is how many pods of the template were ready at the
	// controller's last pass.
	ReadyUpdated int `json:"ready_updated,omitempty"`
	// DeadlineExceeded is set when the rollout missed its progress deadline
	// and was not rolled back (no auto_rollback, or it is a rollback): it
	// stays where it is until one more pod becomes ready or the template
	// changes.
	DeadlineExceeded bool `json:"deadline_exceeded,omitempty"`
}

// AppRevision is one pod template an app has had.
type AppRevision struct {
	TemplateHash string          `json:"template_hash"`
	Spec         configs.AppSpec `json:"spec"`
	Time         time.Time       `json:"time"`
}

// Pod is one copy of an app's pod template, bound to at most one node.
type Pod struct {
	Meta
	Spec   PodSpec   `json:"spec"`
	Status PodStatus `json:"status"`
}

// PodSpec is written by the app controller and, for Node, by the scheduler.
type PodSpec struct {
	App          string `json:"app"`
	TemplateHash string `json:"template_hash"`
	// Node is empty until the scheduler binds the pod.
	Node         string                            `json:"node,omitempty"`
	Restart      string                            `json:"restart,omitempty"`
	NodeSelector map[string]string                 `json:"node_selector,omitempty"`
	Containers   map[string]*configs.ContainerSpec `json:"containers"`
	Volumes      map[string]*configs.VolumeSpec    `json:"volumes,omitempty"`
	// TerminationGrace between SIGTERM and SIGKILL.
	TerminationGrace configs.Duration `json:"termination_grace,omitempty"`
	// Deleting is set when the pod is to go: endpoints drop it at once, and
	// its node's agent stops it and then removes the object.
	Deleting *time.Time `json:"deleting,omitempty"`
}

// Pod phases.
const (
	PodPending   = "Pending"
	PodRunning   = "Running"
	PodSucceeded = "Succeeded"
	PodFailed    = "Failed"
	PodUnknown   = "Unknown"
)

// PodStatus is reported by the agent of the pod's node.
type PodStatus struct {
	Phase      string            `json:"phase,omitempty"`
	IP         string            `json:"ip,omitempty"`
	Ready      bool              `json:"ready"`
	Reason     string            `json:"reason,omitempty"`
	Message    string            `json:"message,omitempty"`
	StartedAt  *time.Time        `json:"started_at,omitempty"`
	Containers []ContainerStatus `json:"containers,omitempty"`
}

// ContainerStatus is the state of one container of a pod.
type ContainerStatus struct {
	Name     string `json:"name"`
	State    string `json:"state"` // waiting | running | exited
	Ready    bool   `json:"ready"`
	Restarts int    `json:"restarts"`
	PID      int    `json:"pid,omitempty"`
	ExitCode int    `json:"exit_code,omitempty"`
	// Reason of the last exit or wait: Completed, Error, OOMKilled,
	// ImagePullBackOff, CrashLoopBackOff...
	Reason    string     `json:"reason,omitempty"`
	Message   string     `json:"message,omitempty"`
	StartedAt *time.Time `json:"started_at,omitempty"`
}

// Service is a load-balanced virtual IP.
type Service struct {
	Meta
	Spec   configs.ServiceSpec `json:"spec"`
	Status ServiceStatus       `json:"status"`
}

// ServiceStatus holds what the server allocated for a service.
type ServiceStatus struct {
	ClusterIP string `json:"cluster_ip,omitempty"`
	NodePort  int    `json:"node_port,omitempty"`
	// Address is the LAN address (VIP) of a load-balancer service, taken
	// from the server's [lb] pools in the same write as the service.
	Address string `json:"address,omitempty"`
	// Holder is the node that last reported announcing Address (PUT
	// /v1/services/{name}/holder); "" until one did.
	Holder string `json:"holder,omitempty"`
}

// ServiceHolder is the body of PUT /v1/services/{name}/holder: a node says
// that it announces Address now.
type ServiceHolder struct {
	Address string `json:"address"`
	Holder  string `json:"holder"`
}

// Endpoints lists the backends of the service of the same name.
type Endpoints struct {
	Meta
	Endpoints []Endpoint `json:"endpoints"`
	// Activate is set while the service's app may scale to zero (autoscale
	// min 0): a node's load balancer then sends new connections, while
	// there are no endpoints, to its agent's activator, which wakes the
	// app and holds them until an endpoint is ready (see load.go).
	Activate bool `json:"activate,omitempty"`
}

// Endpoint is one ready pod behind a service.
type Endpoint struct {
	Pod  string `json:"pod"`
	Node string `json:"node"`
	IP   string `json:"ip"`
	Port int    `json:"port"`
}

// Event types.
const (
	EventNormal  = "Normal"
	EventWarning = "Warning"
)

// Event records something a controller or agent did or saw.
type Event struct {
	Meta
	// Object is "kind/name", e.g. "pods/web-7d9c-x2f".
	Object  string    `json:"object"`
	Type    string    `json:"type"`
	Reason  string    `json:"reason"`
	Message string    `json:"message"`
	Source  string    `json:"source,omitempty"`
	Time    time.Time `json:"time"`
	Count   int       `json:"count,omitempty"`
}

// GetMeta returns m; it makes every object that embeds Meta an Object.
func (m *Meta) GetMeta() *Meta { return m }

// Object is any object the store keeps.
type Object interface {
	GetMeta() *Meta
}

var (
	_ Object = (*Node)(nil)
	_ Object = (*App)(nil)
	_ Object = (*Pod)(nil)
	_ Object = (*Service)(nil)
	_ Object = (*Endpoints)(nil)
	_ Object = (*Event)(nil)
)

// Watch event types.
const (
	EventPut    = "put"
	EventDelete = "delete"
)

// WatchEvent is one line of a watch stream: an object written or deleted at
// Revision. A delete carries the object as it was last written.
type WatchEvent struct {
	Type     string          `json:"type"`
	Revision int64           `json:"revision"`
	Kind     string          `json:"kind"`
	Object   json.RawMessage `json:"object"`
}

// ErrorBody is the body of every error answer of the API.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail says what went wrong. Code is one of the Code* constants.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Field is the field path of the first invalid field, if any.
	Field string `json:"field,omitempty"`
	// Details lists every field error of an invalid request.
	Details []FieldDetail `json:"details,omitempty"`
}

// FieldDetail is one invalid field.
type FieldDetail struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error codes and the HTTP status they go with.
const (
	CodeInvalid      = "invalid"           // 400
	CodeUnauthorized = "unauthorized"      // 401
	CodeNotFound     = "not_found"         // 404
	CodeConflict     = "conflict"          // 409: stale revision or exists
	CodeGone         = "gone"              // 410: watch from a compacted revision, relist
	CodeTooMany      = "too_many_requests" // 429: a limit on concurrent streams (watches, log follows)
	CodeUnavailable  = "unavailable"       // 503
	CodeInternal     = "internal"          // 500
)
