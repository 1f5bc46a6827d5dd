package configs

import "time"

// Defaults of the app and service specs, applied by SetDefaults.
const (
	DefaultReplicas         = 1
	DefaultTerminationGrace = Duration(10 * time.Second)
	DefaultProbePeriod      = Duration(10 * time.Second)
	DefaultProbeTimeout     = Duration(time.Second)
	DefaultFailureThreshold = 3
	DefaultSuccessThreshold = 1
	DefaultProgressDeadline = Duration(60 * time.Second)
)

// SetDefaults fills every unset field of a with its default: mode replicas,
// replicas 1 (none in per-node mode), restart always, termination_grace 10s,
// volume type empty, probe period 10s, timeout 1s, failure_threshold 3,
// success_threshold 1, and an update strategy of max_surge 1,
// max_unavailable 0 and progress_deadline 60s. A per-node app has at most
// one pod per node, so its update defaults to max_surge 0 and
// max_unavailable 1 instead: a surge pod would share the node (and its
// host ports) with the old one. SetDefaults leaves set fields alone and may
// be called more than once.
func (a *AppSpec) SetDefaults() {
	if a.Mode == "" {
		a.Mode = ModeReplicas
	}
	if a.Replicas == nil && a.Mode != ModePerNode {
		a.Replicas = ptr(DefaultReplicas)
	}
	if a.Restart == "" {
		a.Restart = RestartAlways
	}
	if a.TerminationGrace == 0 {
		a.TerminationGrace = DefaultTerminationGrace
	}
	for _, c := range a.Containers {
		if c == nil {
			continue
		}
		for _, p := range []*Probe{c.Readiness, c.Liveness, c.Startup} {
			if p != nil {
				p.SetDefaults()
			}
		}
	}
	for _, v := range a.Volumes {
		if v != nil && v.Type == "" {
			v.Type = VolumeEmpty
		}
	}
	if a.Update == nil {
		a.Update = &UpdateSpec{}
	}
	surge, unavailable := 1, 0
	if a.Mode == ModePerNode {
		surge, unavailable = 0, 1
	}
	if a.Update.MaxSurge == nil {
		a.Update.MaxSurge = ptr(surge)
	}
	if a.Update.MaxUnavailable == nil {
		a.Update.MaxUnavailable = ptr(unavailable)
	}
	if a.Update.ProgressDeadline == 0 {
		a.Update.ProgressDeadline = DefaultProgressDeadline
	}
}

// SetDefaults fills the unset timings and thresholds of p.
func (p *Probe) SetDefaults() {
	if p.Period == 0 {
		p.Period = DefaultProbePeriod
	}
	if p.Timeout == 0 {
		p.Timeout = DefaultProbeTimeout
	}
	if p.FailureThreshold == 0 {
		p.FailureThreshold = DefaultFailureThreshold
	}
	if p.SuccessThreshold == 0 {
		p.SuccessThreshold = DefaultSuccessThreshold
	}
}

// SetDefaults fills every unset field of s: protocol tcp, type cluster,
// target_port = port, affinity none.
func (s *ServiceSpec) SetDefaults() {
	if s.Protocol == "" {
		s.Protocol = ProtocolTCP
	}
	if s.Type == "" {
		s.Type = ServiceCluster
	}
	if s.TargetPort.IsZero() && s.Port != 0 {
		s.TargetPort = PortRef{Number: s.Port}
	}
	if s.Affinity == "" {
		s.Affinity = AffinityNone
	}
}

// SetDefaults applies the defaults to every app and service of m.
func (m *Manifest) SetDefaults() {
	for _, a := range m.Apps {
		if a != nil {
			a.SetDefaults()
		}
	}
	for _, s := range m.Services {
		if s != nil {
			s.SetDefaults()
		}
	}
}

func ptr[T any](v T) *T { return &v }
