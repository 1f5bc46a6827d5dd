package api

import (
	"fmt"

	"github.com/skiff-edge/skiff/configs"
)

// Kinds of the file sets apps mount and read: configs and secrets.
const (
	KindConfig = "configs"
	KindSecret = "secrets"
)

// Config is a named set of files ([config.NAME] of a manifest).
type Config struct {
	Meta
	Spec   configs.FilesSpec `json:"spec"`
	Status FilesStatus       `json:"status"`
}

// Secret is a named set of files that is never shown: the store keeps it
// sealed (AES-GCM, see apiserver/secretkeys.go), the API shows only its
// names and sizes, and only a node that runs a pod using it gets the files
// (GET /v1/nodes/{node}/secrets/{name}).
type Secret struct {
	Meta
	// Spec carries the files in clear in a PUT body and in the answer to
	// a node's fetch; it is empty in the store and in every other answer.
	Spec   configs.FilesSpec `json:"spec"`
	Status FilesStatus       `json:"status"`
	// Sealed is the files, encrypted: in the store only, never in an
	// answer.
	Sealed []byte `json:"sealed,omitempty"`
}

// FilesStatus describes a config's or secret's files without their
// content.
type FilesStatus struct {
	// Version identifies the content: a change makes a new one. For a
	// config it is the content's hash; for a secret a random value drawn
	// at each change, so that it says nothing about the content.
	Version string `json:"version"`
	// Sizes of the files in bytes, by name.
	Sizes map[string]int `json:"sizes"`
}

// Size is the total of Sizes.
func (s FilesStatus) Size() int {
	n := 0
	for _, v := range s.Sizes {
		n += v
	}
	return n
}

// Redacted is how a secret's file shows: its size, never its content.
func Redacted(size int) string { return fmt.Sprintf("<redacted, %d bytes>", size) }

// SizesOf returns the size of each file of f.
func SizesOf(f *configs.FilesSpec) map[string]int {
	out := make(map[string]int, len(f.Files))
	for k, v := range f.Files {
		out[k] = len(v)
	}
	return out
}

var (
	_ Object = (*Config)(nil)
	_ Object = (*Secret)(nil)
)
