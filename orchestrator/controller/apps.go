package controller

import (
	"math/rand/v2"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

// Defaults of an app's update strategy (configs.UpdateSpec).
const (
	defaultMaxSurge         = 1
	defaultMaxUnavailable   = 0
	defaultProgressDeadline = 60 * time.Second
	// maxHistory is how many pod templates an app keeps for rollback.
	maxHistory = 10
)

const nameChars = "abcdefghijklmnopqrstuvwxyz0123456789"

// podName returns "<app>-<hash[:5]>-<5 random [a-z0-9]>" that is not in taken.
func podName(app, hash string, taken func(string) bool) string {
	h := hash
	if len(h) > 5 {
		h = h[:5]
	}
	for {
		b := make([]byte, 5)
		for i := range b {
			b[i] = nameChars[rand.IntN(len(nameChars))]
		}
		name := app + "-" + h + "-" + string(b)
		if !taken(name) {
			return name
		}
	}
}

// newPod makes a pod of app's current template, bound to node if node is
// not empty (per-node mode).
func newPod(app *api.App, hash, name, node string) *api.Pod {
	s := &app.Spec
	return &api.Pod{
		Meta: api.Meta{Name: name},
		Spec: api.PodSpec{
			App:              app.Name,
			TemplateHash:     hash,
			Node:             node,
			Restart:          s.Restart,
			NodeSelector:     s.NodeSelector,
			Containers:       s.Containers,
			Volumes:          s.Volumes,
			TerminationGrace: s.TerminationGrace,
		},
	}
}

// restartPolicy returns the app's restart policy with its default.
func restartPolicy(r string) string {
	if r == "" {
		return configs.RestartAlways
	}
	return r
}

// replaceable reports whether a terminated pod is replaced by a new one, per
// the restart policy: always replaces any ended pod, on-failure a failed
// one, never none (the ended pod stays and counts as a replica, so that
// the work is not run again and its logs stay).
func replaceable(p *api.Pod, restart string) bool {
	switch p.Status.Phase {
	case api.PodFailed:
		return restartPolicy(restart) != configs.RestartNever
	case api.PodSucceeded:
		return restartPolicy(restart) == configs.RestartAlways
	}
	return false
}

// updateParams returns the app's max surge and max unavailable with their
// defaults; both 0 would stall, so surge becomes 1.
func updateParams(s *configs.AppSpec) (surge, unavailable int) {
	surge, unavailable = defaultMaxSurge, defaultMaxUnavailable
	if u := s.Update; u != nil {
		if u.MaxSurge != nil {
			surge = *u.MaxSurge
		}
		if u.MaxUnavailable != nil {
			unavailable = *u.MaxUnavailable
		}
	}
	if surge <= 0 && unavailable <= 0 {
		surge = 1
	}
	return max(surge, 0), max(unavailable, 0)
}

func progressDeadline(s *configs.AppSpec) time.Duration {
	if s.Update != nil && s.Update.ProgressDeadline > 0 {
		return s.Update.ProgressDeadline.D()
	}
	return defaultProgressDeadline
}

func replicasOf(s *configs.AppSpec) int {
	if s.Replicas != nil {
		return max(*s.Replicas, 0)
	}
	return 1
}

// recordRevision notes hash as the app's newest template in its history:
// appended when new, moved last when it returns (a rollback), and trimmed to
// maxHistory entries. It reports whether the history changed.
func recordRevision(st *api.AppStatus, spec *configs.AppSpec, hash string, now time.Time) bool {
	h := st.History
	if n := len(h); n > 0 && h[n-1].TemplateHash == hash {
		return false
	}
	out := make([]api.AppRevision, 0, len(h)+1)
	for _, r := range h {
		if r.TemplateHash != hash {
			out = append(out, r)
		}
	}
	// The whole spec is kept, as it was when the template first appeared;
	// a rollback takes only its template part (api.SetTemplate).
	out = append(out, api.AppRevision{TemplateHash: hash, Spec: *spec, Time: now})
	if len(out) > maxHistory {
		out = out[len(out)-maxHistory:]
	}
	st.History = out
	return true
}
