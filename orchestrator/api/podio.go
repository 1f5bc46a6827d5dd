package api

import (
	"context"
	"errors"
	"io"
)

// PodIO serves the logs and exec of the pods of one node: the node agent
// satisfies it and the API server consumes it. In `skiff server --agent` the
// agent runs in the process and hands itself to the server; a PodIO that
// forwards to a remote agent plugs in the same way.
type PodIO interface {
	// Logs streams a container's log lines (without the runtime's
	// timestamp and stream prefix). tail < 0 means the whole log.
	Logs(ctx context.Context, pod *Pod, container string, tail int, follow bool) (io.ReadCloser, error)
	// Exec runs cmd in the container, copies its output (stdout and stderr
	// interleaved) to out as it comes and returns its exit code.
	Exec(ctx context.Context, pod *Pod, container string, cmd []string, out io.Writer) (int, error)
}

// Errors a PodIO returns (wrapped) for the API to answer with the right
// status.
var (
	// ErrNoContainer: the pod has no such container, or it is not on this
	// node's runtime yet (404).
	ErrNoContainer = errors.New("no such container")
	// ErrChooseContainer: the pod has several containers and none was
	// named (400).
	ErrChooseContainer = errors.New("the pod has several containers: choose one")
	// ErrNotRunning: exec in a container that is not running (409).
	ErrNotRunning = errors.New("container not running")
	// ErrOtherNode: the pod runs on a node whose agent is not in this
	// process (503).
	ErrOtherNode = errors.New("pod runs on another node")
)
