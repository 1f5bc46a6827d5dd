package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

// ExitError makes the CLI exit with Code without printing anything: the
// exit code of a command run by exec.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit code %d", e.Code) }

// Logs copies a pod container's log to w; with o.Follow until ctx ends.
func Logs(ctx context.Context, c *client.Client, w io.Writer, pod string, o client.LogOptions) error {
	rc, err := c.Logs(ctx, pod, o)
	if err != nil {
		return err
	}
	defer rc.Close()
	if _, err := io.Copy(w, rc); err != nil && ctx.Err() == nil {
		return fmt.Errorf("read logs of pod %s: %w", pod, err)
	}
	return nil
}

// Exec runs a command in a pod's container, copies its output to w, and
// returns an *ExitError when the command exits non-zero.
func Exec(ctx context.Context, c *client.Client, w io.Writer, pod, container string, cmd []string) error {
	code, err := c.Exec(ctx, pod, api.ExecRequest{Container: container, Command: cmd}, w)
	if err != nil {
		return err
	}
	if code != 0 {
		return &ExitError{Code: code}
	}
	return nil
}
