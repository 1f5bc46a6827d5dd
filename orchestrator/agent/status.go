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
	// ReasonFilesUnavailable: a config or secret the pod uses could not
	// be fetched (missing, or the server unreachable).
	ReasonFilesUnavailable = "FilesUnavailable"
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
	var n phaseCounts
	allReady := len(names) > 0
	for _, name := range names {
		cs := containerStatus(name, views[name], p.Spec.Restart, &n)
		if !cs.Ready {
			allReady = false
		}
		s.Containers = append(s.Containers, cs)
	}
	s.Phase, s.Reason = n.phase(len(names))
	s.Ready = allReady && s.Phase == api.PodRunning
	if s.StartedAt == nil && n.running > 0 {
		t := now.UTC()
		s.StartedAt = &t
	}
	return s
}

// phaseCounts tallies a pod's containers by how they count toward the
// pod's phase.
type phaseCounts struct {
	// running counts the containers that run or are about to restart.
	running int
	// pending counts the containers not started yet; waitingImage those of
	// them whose image pull backs off.
	pending, waitingImage int
	// exited counts the containers that exited for good; failed those of
	// them with a non-zero exit code.
	exited, failed int
}

// phase decides the phase of a pod of total containers: Failed or
// Succeeded once every one exited for good (Failed when one failed),
// Pending while one has not started (ImagePullBackOff when its pull backs
// off), Running otherwise.
func (n *phaseCounts) phase(total int) (phase, reason string) {
	switch {
	case total > 0 && n.exited == total:
		if n.failed > 0 {
			return api.PodFailed, "Error"
		}
		return api.PodSucceeded, "Completed"
	case n.pending > 0:
		if n.waitingImage > 0 {
			return api.PodPending, ReasonImagePullBackOff
		}
		return api.PodPending, ""
	}
	return api.PodRunning, ""
}

// containerStatus reports container name from what the agent knows of it
// (v), and counts it in n. One that does not exist yet is waiting, for the
// reason v gives or ContainerCreating; one that exists reports its run
// (runState).
func containerStatus(name string, v ctrView, restart string, n *phaseCounts) api.ContainerStatus {
	cs := api.ContainerStatus{Name: name}
	if v.st == nil {
		cs.State = "waiting"
		cs.Reason, cs.Message = v.waitReason, v.waitMsg
		if cs.Reason == "" {
			cs.Reason = ReasonCreating
		}
		if cs.Reason == ReasonImagePullBackOff {
			n.waitingImage++
		}
		n.pending++
		return cs
	}
	st := v.st
	cs.Restarts = st.RestartCount
	if !st.StartedAt.IsZero() {
		t := st.StartedAt
		cs.StartedAt = &t
	}
	if st.Reason != "" {
		cs.Reason, cs.ExitCode, cs.Message = st.Reason, st.ExitCode, st.Message
	}
	runState(&cs, st, v.ready, restart, n)
	return cs
}

// runState sets the state of a container that exists from its run st, and
// counts it in n. It is running (ready as the probes say); waiting while
// being created, or in CrashLoopBackOff while it waits to restart (which
// counts as running); or exited for good when the pod's restart policy
// does not restart it.
func runState(cs *api.ContainerStatus, st *containers.ContainerStatus, ready bool, restart string, n *phaseCounts) {
	switch st.State {
	case containers.StateRunning:
		cs.State, cs.PID, cs.Ready = "running", st.Pid, ready
		n.running++
	case containers.StateCreated:
		cs.State = "waiting"
		if st.RestartCount > 0 || st.Reason != "" {
			cs.Reason = ReasonCrashLoopBackOff
			n.running++ // restarting counts as running for the phase
		} else {
			cs.Reason = ReasonCreating
			n.pending++
		}
	case containers.StateExited:
		if willRestart(restart, st.ExitCode) {
			cs.State, cs.Reason = "waiting", ReasonCrashLoopBackOff
			if st.Reason == containers.ReasonOOMKilled {
				cs.Message = "last exit: OOMKilled"
			}
			n.running++
		} else {
			cs.State = "exited"
			n.exited++
			if st.ExitCode != 0 {
				n.failed++
			}
		}
	}
}
