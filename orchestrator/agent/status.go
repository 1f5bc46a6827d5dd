package agent

import (
	"sort"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/containers"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

// Container waiting reasons the agent reports.
const (
	ReasonCreating         = "ContainerCreating"
	ReasonImagePullBackOff = "ImagePullBackOff"
	ReasonCrashLoopBackOff = "CrashLoopBackOff"
)

// ctrView is what the agent knows of one container when it builds a
// status.
type ctrView struct {
	// st is the runtime's status; nil while the container does not exist.
	st *containers.ContainerStatus
	// ready is the probes' verdict (readiness passing, startup passed).
	ready bool
	// waitReason and waitMsg explain a container that does not exist yet.
	waitReason, waitMsg string
}

// willRestart mirrors the runtime's restart policy.
func willRestart(policy string, exitCode int) bool {
	switch policy {
	case configs.RestartNever:
		return false
	case configs.RestartOnFailure:
		return exitCode != 0
	}
	return true
}

// buildStatus computes a pod's status from its containers. prev is the
// status last reported (for StartedAt).
func buildStatus(p *api.Pod, ip string, now time.Time, views map[string]ctrView, prev api.PodStatus) api.PodStatus {
	names := make([]string, 0, len(p.Spec.Containers))
	for name := range p.Spec.Containers {
		names = append(names, name)
	}
	sort.Strings(names)
	s := api.PodStatus{IP: ip, StartedAt: prev.StartedAt}
	var running, pending, exitedForGood, failed, waitingImage int
	allReady := len(names) > 0
	for _, name := range names {
		v := views[name]
		cs := api.ContainerStatus{Name: name}
		switch {
		case v.st == nil:
			cs.State = "waiting"
			cs.Reason, cs.Message = v.waitReason, v.waitMsg
			if cs.Reason == "" {
				cs.Reason = ReasonCreating
			}
			if cs.Reason == ReasonImagePullBackOff {
				waitingImage++
			}
			pending++
		default:
			st := v.st
			cs.Restarts = st.RestartCount
			if !st.StartedAt.IsZero() {
				t := st.StartedAt
				cs.StartedAt = &t
			}
			if st.Reason != "" {
				cs.Reason, cs.ExitCode, cs.Message = st.Reason, st.ExitCode, st.Message
			}
			switch st.State {
			case containers.StateRunning:
				cs.State, cs.PID, cs.Ready = "running", st.Pid, v.ready
				running++
			case containers.StateCreated:
				cs.State = "waiting"
				if st.RestartCount > 0 || st.Reason != "" {
					cs.Reason = ReasonCrashLoopBackOff
					running++ // restarting counts as running for the phase
				} else {
					cs.Reason = ReasonCreating
					pending++
				}
			case containers.StateExited:
				if willRestart(p.Spec.Restart, st.ExitCode) {
					cs.State, cs.Reason = "waiting", ReasonCrashLoopBackOff
					if st.Reason == containers.ReasonOOMKilled {
						cs.Message = "last exit: OOMKilled"
					}
					running++
				} else {
					cs.State = "exited"
					exitedForGood++
					if st.ExitCode != 0 {
						failed++
					}
				}
			}
		}
		if !cs.Ready {
			allReady = false
		}
		s.Containers = append(s.Containers, cs)
	}
	switch {
	case len(names) > 0 && exitedForGood == len(names):
		if failed > 0 {
			s.Phase, s.Reason = api.PodFailed, "Error"
		} else {
			s.Phase, s.Reason = api.PodSucceeded, "Completed"
		}
	case pending > 0:
		s.Phase = api.PodPending
		if waitingImage > 0 {
			s.Reason = ReasonImagePullBackOff
		}
	default:
		s.Phase = api.PodRunning
	}
	s.Ready = allReady && s.Phase == api.PodRunning
	if s.StartedAt == nil && running > 0 {
		t := now.UTC()
		s.StartedAt = &t
	}
	return s
}
