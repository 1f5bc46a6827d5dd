package configs

// The spec types below are what deploy manifests decode into. The orchestrator
// embeds them in its objects and sends them over the API as JSON, so every
// field carries both a toml and a json tag (snake_case in both).

// Manifest is the content of one or more deploy files: any number of apps and
// services, keyed by name.
type Manifest struct {
	Apps     map[string]*AppSpec     `toml:"app" json:"apps,omitempty"`
	Services map[string]*ServiceSpec `toml:"service" json:"services,omitempty"`
	// Configs are named sets of files that apps mount or read (see
	// files.go); Secrets the same, kept encrypted and never printed.
	Configs map[string]*FilesSpec `toml:"config" json:"configs,omitempty"`
	Secrets map[string]*FilesSpec `toml:"secret" json:"secrets,omitempty"`
}

// Restart policies of an app's containers.
const (
	RestartAlways    = "always"
	RestartOnFailure = "on-failure"
	RestartNever     = "never"
)

// Seccomp profiles of a container.
const (
	SeccompDefault    = "default"    // Docker's default profile
	SeccompUnconfined = "unconfined" // no filter, where the node allows it
)

// App modes.
const (
	ModeReplicas = "replicas" // keep Replicas pods (the default)
	ModePerNode  = "per-node" // one pod on every matching Ready node
)

// AppSpec describes an app: a pod template and how many copies of it to run.
type AppSpec struct {
	// Replicas is the number of pods in replicas mode. Default 1.
	Replicas *int `toml:"replicas" json:"replicas,omitempty"`
	// Mode is "replicas" (default) or "per-node".
	Mode string `toml:"mode" json:"mode,omitempty"`
	// Restart is always (default), on-failure or never.
	Restart string `toml:"restart" json:"restart,omitempty"`
	// NodeSelector restricts the app to nodes whose labels match all pairs.
	NodeSelector map[string]string `toml:"node_selector" json:"node_selector,omitempty"`
	// TerminationGrace is how long a container has between SIGTERM and
	// SIGKILL. Default 10s.
	TerminationGrace Duration `toml:"termination_grace" json:"termination_grace,omitempty"`
	// Containers of each pod, keyed by name. At least one.
	Containers map[string]*ContainerSpec `toml:"container" json:"containers"`
	// Volumes of each pod, keyed by name; containers mount them by name.
	Volumes map[string]*VolumeSpec `toml:"volume" json:"volumes,omitempty"`
	// Update is the rolling update strategy.
	Update *UpdateSpec `toml:"update" json:"update,omitempty"`
	// Autoscale, when set, lets skiff scale the app between Min and Max.
	Autoscale *AutoscaleSpec `toml:"autoscale" json:"autoscale,omitempty"`
	// RestartedAt is the time (RFC 3339, UTC) of the app's last `skiff
	// rollout restart`, set by the server, never by a manifest (it is no
	// TOML key). It is part of the pod template, so that a new stamp
	// replaces every pod through a rolling update; an apply without one
	// keeps the stored one.
	RestartedAt string `toml:"-" json:"restarted_at,omitempty"`
	// ContentHashes maps each config and secret the pod template uses
	// ("config/NAME", "secret/NAME") to its content's version, set by the
	// server, never by a manifest. It is part of the pod template, so that
	// a changed config or secret rolls the apps that use it.
	ContentHashes map[string]string `toml:"-" json:"content_hashes,omitempty"`
}

// ContainerSpec is one container of a pod.
type ContainerSpec struct {
	// Image is an OCI image reference. Required.
	Image string `toml:"image" json:"image"`
	// Command replaces the image's entrypoint; Args replace its cmd.
	Command []string          `toml:"command" json:"command,omitempty"`
	Args    []string          `toml:"args" json:"args,omitempty"`
	Env     map[string]string `toml:"env" json:"env,omitempty"`
	// EnvFrom sets variables from a file of a config or a secret: variable
	// -> "config:NAME/FILE" or "secret:NAME/FILE".
	EnvFrom map[string]string `toml:"env_from" json:"env_from,omitempty"`
	// Workdir replaces the image's working directory.
	Workdir string `toml:"workdir" json:"workdir,omitempty"`
	// User is "uid" or "uid:gid"; it replaces the image's user.
	User string `toml:"user" json:"user,omitempty"`
	// Ports names the container's ports: name -> port number.
	Ports map[string]int `toml:"ports" json:"ports,omitempty"`
	// HostPorts binds a named port on the node: port name -> host port.
	HostPorts map[string]int `toml:"host_ports" json:"host_ports,omitempty"`
	// CPU is the requested and limited CPU in cores (0.25 = a quarter core).
	CPU float64 `toml:"cpu" json:"cpu,omitempty"`
	// Memory is the requested and limited memory.
	Memory Bytes `toml:"memory" json:"memory,omitempty"`
	// Pids limits the number of processes; 0 means the default (1024).
	Pids int `toml:"pids" json:"pids,omitempty"`
	// Mounts mounts pod volumes: volume name -> path in the container.
	Mounts map[string]string `toml:"mounts" json:"mounts,omitempty"`
	// ReadOnlyRoot mounts the root filesystem read-only.
	ReadOnlyRoot bool `toml:"read_only_root" json:"read_only_root,omitempty"`
	// Seccomp is the container's seccomp profile: default (Docker's, also
	// when empty) or unconfined (none), which a node may forbid
	// (allow_unconfined). SetDefaults leaves it empty, so that adding the
	// key changed no existing app's template.
	Seccomp string `toml:"seccomp" json:"seccomp,omitempty"`

	Readiness *Probe `toml:"readiness" json:"readiness,omitempty"`
	Liveness  *Probe `toml:"liveness" json:"liveness,omitempty"`
	Startup   *Probe `toml:"startup" json:"startup,omitempty"`
}

// Probe checks a container. Exactly one of HTTPGet, TCP and Exec is set.
type Probe struct {
	// HTTPGet is a path; the probe passes on a 2xx or 3xx answer.
	HTTPGet string `toml:"http_get" json:"http_get,omitempty"`
	// TCP passes when a connection to Port opens.
	TCP bool `toml:"tcp" json:"tcp,omitempty"`
	// Exec runs a command in the container; it passes on exit 0.
	Exec []string `toml:"exec" json:"exec,omitempty"`
	// Port for HTTPGet and TCP: a number or a container port's name.
	Port PortRef `toml:"port" json:"port,omitzero"`
	// InitialDelay before the first probe. Default 0.
	InitialDelay Duration `toml:"initial_delay" json:"initial_delay,omitempty"`
	// Period between probes. Default 10s.
	Period Duration `toml:"period" json:"period,omitempty"`
	// Timeout of one probe. Default 1s.
	Timeout Duration `toml:"timeout" json:"timeout,omitempty"`
	// FailureThreshold failures in a row make the probe fail. Default 3.
	FailureThreshold int `toml:"failure_threshold" json:"failure_threshold,omitempty"`
	// SuccessThreshold successes in a row make it pass again. Default 1.
	SuccessThreshold int `toml:"success_threshold" json:"success_threshold,omitempty"`
}

// Volume types.
const (
	VolumeEmpty  = "empty"  // a directory in the pod, removed with it
	VolumeMemory = "memory" // a tmpfs, with an optional size limit
	VolumeHost   = "host"   // a bind mount of Path on the node
	VolumeConfig = "config" // the files of config Name, read-only
	VolumeSecret = "secret" // the files of secret Name, read-only, in memory
)

// VolumeSpec is one pod volume.
type VolumeSpec struct {
	Type string `toml:"type" json:"type"`
	// Path on the node, for host volumes.
	Path string `toml:"path" json:"path,omitempty"`
	// Name of the config or secret, for config and secret volumes.
	Name string `toml:"name" json:"name,omitempty"`
	// Size limit of memory volumes; 0 means the kernel default.
	Size Bytes `toml:"size" json:"size,omitempty"`
	// ReadOnly mounts a host volume read-only in every container that
	// mounts it.
	ReadOnly bool `toml:"read_only" json:"read_only,omitempty"`
}

// UpdateSpec is the rolling update strategy of an app.
type UpdateSpec struct {
	// MaxSurge pods above replicas during an update. Default 1.
	MaxSurge *int `toml:"max_surge" json:"max_surge,omitempty"`
	// MaxUnavailable pods below replicas during an update. Default 0.
	MaxUnavailable *int `toml:"max_unavailable" json:"max_unavailable,omitempty"`
	// AutoRollback returns to the previous revision when new pods do not
	// become ready within ProgressDeadline.
	AutoRollback bool `toml:"auto_rollback" json:"auto_rollback,omitempty"`
	// ProgressDeadline for a new pod to become ready. Default 60s.
	ProgressDeadline Duration `toml:"progress_deadline" json:"progress_deadline,omitempty"`
	// Prepull has every node the app could run on pull a new template's
	// images before the update replaces any pod: the update waits until
	// each of them has them. Not part of the pod template: turning it on
	// or off starts no update.
	Prepull bool `toml:"prepull" json:"prepull,omitempty"`
}

// AutoscaleSpec scales an app with traffic or CPU. With it set, the
// autoscaler owns the app's replica count: the app's replicas key is only
// the count to start from (clamped to min..max).
type AutoscaleSpec struct {
	Min int `toml:"min" json:"min"`
	Max int `toml:"max" json:"max"`
	// TargetRPS is new connections (requests, for clients that open a
	// connection per request) per second per replica, measured at the load
	// balancers of every node.
	TargetRPS float64 `toml:"target_rps" json:"target_rps,omitempty"`
	// TargetCPU is a fraction of the requested CPU (0.7).
	TargetCPU float64 `toml:"target_cpu" json:"target_cpu,omitempty"`
	// ScaleDownWindow is how long the load must have asked for fewer
	// replicas before the autoscaler removes any: it scales down to the
	// largest count asked for within the window. Default 60s.
	ScaleDownWindow Duration `toml:"scale_down_window" json:"scale_down_window,omitempty"`
	// Tolerance is the band around the target, as a fraction, inside which
	// the load changes nothing (0.1: ±10%). Default 0.1.
	Tolerance float64 `toml:"tolerance" json:"tolerance,omitempty"`
	// IdleWindow is, with Min 0, how long the app must have had no
	// connection (new or open) before it goes to zero pods. Default 5m.
	IdleWindow Duration `toml:"idle_window" json:"idle_window,omitempty"`
}

// Autoscale defaults.
const (
	DefaultScaleDownWindow = Duration(60e9)
	DefaultTolerance       = 0.1
	DefaultIdleWindow      = Duration(300e9)
)

// Service types.
const (
	ServiceCluster      = "cluster"       // a virtual IP inside the cluster
	ServiceNodePort     = "node-port"     // also a port on every node
	ServiceLoadBalancer = "load-balancer" // also an external VIP
)

// Announce policies of a load-balancer service.
const (
	AnnounceAnyNode   = "any-node"
	AnnounceReadyNode = "ready-node"
)

// Protocols of a service.
const (
	ProtocolTCP = "tcp"
	ProtocolUDP = "udp"
)

// Session affinities of a service.
const (
	AffinityNone     = "none"
	AffinityClientIP = "client-ip"
)

// ServiceSpec is a load-balanced virtual IP in front of an app's ready pods.
type ServiceSpec struct {
	// App whose pods back the service. Required.
	App string `toml:"app" json:"app"`
	// Port on the virtual IP. Required.
	Port int `toml:"port" json:"port"`
	// TargetPort on the pods: a number or a container port's name. Default
	// Port.
	TargetPort PortRef `toml:"target_port" json:"target_port,omitzero"`
	// Protocol is tcp (default) or udp.
	Protocol string `toml:"protocol" json:"protocol,omitempty"`
	// Type is cluster (default), node-port or load-balancer.
	Type string `toml:"type" json:"type,omitempty"`
	// NodePort for node-port and load-balancer services; 0 picks one in
	// 30000-32767.
	NodePort int `toml:"node_port" json:"node_port,omitempty"`
	// Address asks for a fixed LAN address (the failover VIP) of a
	// load-balancer service; it must lie inside the server's [lb] pools.
	// Empty: the server picks a free one from the pools.
	Address string `toml:"address" json:"address,omitempty"`
	// ExternalIP is the older name of Address, still accepted; a service
	// may set one of the two, not both.
	ExternalIP string `toml:"external_ip" json:"external_ip,omitempty"`
	// Announce says which nodes may announce the Address of a
	// load-balancer service: any-node (default; the address moves only
	// when its node fails or leaves, so connections survive rollouts) or
	// ready-node (a node that runs a ready endpoint, when one is alive: no
	// extra hop, but the address follows the pods, and a move breaks the
	// connections open through the old node).
	Announce string `toml:"announce" json:"announce,omitempty"`
	// Affinity is none (default) or client-ip.
	Affinity string `toml:"affinity" json:"affinity,omitempty"`
	// ClusterIP asks for a fixed virtual IP; empty lets skiff pick one.
	ClusterIP string `toml:"cluster_ip" json:"cluster_ip,omitempty"`
}

// WantAddress is the LAN address the service asks for: Address, or its
// older name ExternalIP; "" lets the server pick one from its pools.
func (s *ServiceSpec) WantAddress() string {
	if s.Address != "" {
		return s.Address
	}
	return s.ExternalIP
}

// AddressField is the field that names the asked-for address ("address",
// or "external_ip" when only the older name is set), for error paths.
func (s *ServiceSpec) AddressField() string {
	if s.Address == "" && s.ExternalIP != "" {
		return "external_ip"
	}
	return "address"
}
