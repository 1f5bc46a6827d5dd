package api

import "time"

// Load reports: what each node's load balancer and pods see, summed by the
// server. They live in memory (agent and server), never in the store: a
// report every few seconds per node must not cost a disk write.

// NodeLoad is one agent's periodic summary (PUT /v1/nodes/{name}/load).
type NodeLoad struct {
	// Interval is the span, in seconds, the rates were measured over.
	Interval float64 `json:"interval"`
	// Services lists the services this node's load balancer sent
	// connections to, with the rate over Interval.
	Services []ServiceLoad `json:"services,omitempty"`
	// Pods lists the CPU use of the running pods bound to this node.
	Pods []PodLoad `json:"pods,omitempty"`
}

// ServiceLoad is one service as one node's load balancer saw it, or (in
// ServiceStats) summed over the nodes.
type ServiceLoad struct {
	Service string `json:"service"`
	// NewPerSec is new connections per second: requests per second for
	// clients that open a connection per request.
	NewPerSec float64 `json:"new_per_sec"`
	// Active is the number of established connections through the service.
	Active int `json:"active"`
	// Partial is set when a rule rewrite reset some of the service's
	// counters within the interval: NewPerSec may then be low, never high.
	Partial   bool           `json:"partial,omitempty"`
	Endpoints []EndpointLoad `json:"endpoints,omitempty"`
}

// EndpointLoad is one endpoint of a service.
type EndpointLoad struct {
	IP        string  `json:"ip"`
	Port      int     `json:"port"`
	NewPerSec float64 `json:"new_per_sec"`
	Active    int     `json:"active"`
}

// PodLoad is one pod's CPU use.
type PodLoad struct {
	Pod string `json:"pod"`
	// CPU is the cores the pod's containers used over the interval.
	CPU float64 `json:"cpu"`
}

// ServiceStats is a service's load summed over every node that reported
// recently (GET /v1/services/{name}/stats).
type ServiceStats struct {
	ServiceLoad
	App string `json:"app,omitempty"`
	// Nodes is how many nodes' reports are in the sum.
	Nodes int `json:"nodes"`
	// Updated is the time of the newest report in the sum; zero when no
	// node reported.
	Updated time.Time `json:"updated,omitzero"`
}

// AppLoad is the load of one app: the sum of its services' rates and of
// its pods' CPU, as the autoscaler sees it.
type AppLoad struct {
	// RPS is new connections per second over the app's services.
	RPS float64 `json:"rps"`
	// Active is established connections over the app's services.
	Active int `json:"active"`
	// CPU is the cores the app's pods used.
	CPU float64 `json:"cpu"`
	// Pods is how many pods reported CPU.
	Pods int `json:"pods"`
	// Nodes is how many nodes' reports are in the sum.
	Nodes int `json:"nodes"`
	// Partial is set when some counters were reset within the interval.
	Partial bool `json:"partial,omitempty"`
	// Updated is the time of the newest report in the sum.
	Updated time.Time `json:"updated,omitzero"`
}

// AutoscaleStatus is the autoscaler's state of an app, kept in the app's
// status (in the store, so that it holds across a restart of the server).
type AutoscaleStatus struct {
	// Desired is the replicas the autoscaler wants; the app controller
	// runs this many instead of the spec's replicas.
	Desired int `json:"desired"`
	// LastScale is when Desired last changed.
	LastScale time.Time `json:"last_scale,omitzero"`
	// LastDirection is +1 (up) or -1 (down) for the last change.
	LastDirection int `json:"last_direction,omitempty"`
	// Reversals holds the times of recent direction changes (up after
	// down or down after up), for the bound on flapping.
	Reversals []time.Time `json:"reversals,omitempty"`
	// Decisions are the most recent scaling decisions, newest last.
	Decisions []ScaleDecision `json:"decisions,omitempty"`
}

// ScaleDecision is one change of an app's desired replicas, with its
// inputs.
type ScaleDecision struct {
	Time    time.Time `json:"time"`
	From    int       `json:"from"`
	To      int       `json:"to"`
	RPS     float64   `json:"rps"`
	CPU     float64   `json:"cpu"`
	Nodes   int       `json:"nodes"`
	Message string    `json:"message"`
}

// StatsList is the answer of GET /v1/stats: the load of every service and
// every app.
type StatsList struct {
	Services map[string]ServiceStats `json:"services"`
	Apps     map[string]AppLoad      `json:"apps"`
	Time     time.Time               `json:"time"`
}
