package api

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	"github.com/skiff-edge/skiff/configs"
)

// podTemplate is the part of an AppSpec that its pods are made from. A change
// to any of it is a new revision with a new template hash; replicas, mode,
// update and autoscale are not part of it. The restart stamp is: a new one
// is a revision that differs by nothing else (`skiff rollout restart`).
type podTemplate struct {
	Restart          string                            `json:"restart,omitempty"`
	NodeSelector     map[string]string                 `json:"node_selector,omitempty"`
	TerminationGrace configs.Duration                  `json:"termination_grace,omitempty"`
	Containers       map[string]*configs.ContainerSpec `json:"containers"`
	Volumes          map[string]*configs.VolumeSpec    `json:"volumes,omitempty"`
	// RestartedAt is omitted when empty, so that the hash of every
	// template never restarted is what it was before the stamp existed.
	RestartedAt string `json:"restarted_at,omitempty"`
	// ContentHashes are the versions of the configs and secrets the
	// template uses: a new version is a new template. Omitted when empty,
	// so that the hash of a template without them is what it was before.
	ContentHashes map[string]string `json:"content_hashes,omitempty"`
}

func templateOf(s *configs.AppSpec) podTemplate {
	return podTemplate{
		Restart:          s.Restart,
		NodeSelector:     s.NodeSelector,
		TerminationGrace: s.TerminationGrace,
		Containers:       s.Containers,
		Volumes:          s.Volumes,
		RestartedAt:      s.RestartedAt,
		ContentHashes:    s.ContentHashes,
	}
}

// TemplateHash returns the hash of the pod-template part of spec: 10 hex
// digits, stable across runs (JSON sorts map keys). Two specs with the same
// hash make the same pods.
func TemplateHash(spec *configs.AppSpec) string {
	b, err := json.Marshal(templateOf(spec))
	if err != nil {
		// The spec types always marshal; a failure here is a programming error.
		panic("api: marshal pod template: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:10]
}

// SetTemplate copies the pod-template part of from into to, keeping to's
// replicas, mode, update and autoscale.
func SetTemplate(to *configs.AppSpec, from *configs.AppSpec) {
	to.Restart = from.Restart
	to.NodeSelector = from.NodeSelector
	to.TerminationGrace = from.TerminationGrace
	to.Containers = from.Containers
	to.Volumes = from.Volumes
	to.RestartedAt = from.RestartedAt
	to.ContentHashes = from.ContentHashes
}
