package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/skiff-edge/skiff/containers"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

var _ api.PodIO = (*Agent)(nil)

// container picks the container of a logs or exec request.
func (a *Agent) container(p *api.Pod, name string) (string, error) {
	if p.Spec.Node != a.name {
		return "", fmt.Errorf("pod %s is on node %s: %w", p.Name, p.Spec.Node, api.ErrOtherNode)
	}
	if a.rtReady() == nil {
		return "", fmt.Errorf("the agent is starting: %w", api.ErrNoContainer)
	}
	if name != "" {
		if p.Spec.Containers[name] == nil {
			return "", fmt.Errorf("pod %s has no container %q: %w", p.Name, name, api.ErrNoContainer)
		}
		return name, nil
	}
	if len(p.Spec.Containers) == 1 {
		for n := range p.Spec.Containers {
			return n, nil
		}
	}
	names := make([]string, 0, len(p.Spec.Containers))
	for n := range p.Spec.Containers {
		names = append(names, n)
	}
	sort.Strings(names)
	return "", fmt.Errorf("%w (-c one of %v)", api.ErrChooseContainer, names)
}

func (a *Agent) rtReady() *containers.Runtime {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rt
}

// Logs streams a container's log as plain lines.
func (a *Agent) Logs(ctx context.Context, p *api.Pod, container string, tail int, follow bool) (io.ReadCloser, error) {
	name, err := a.container(p, container)
	if err != nil {
		return nil, err
	}
	rc, err := a.rtReady().Logs(ctx, p.Name, name, containers.LogOptions{Tail: tail, Follow: follow})
	if errors.Is(err, containers.ErrNotFound) {
		return nil, fmt.Errorf("%s/%s: %w", p.Name, name, api.ErrNoContainer)
	}
	if err != nil {
		return nil, err
	}
	return plainLog(rc), nil
}

// Exec runs cmd in a container and copies its output to out.
func (a *Agent) Exec(ctx context.Context, p *api.Pod, container string, cmd []string, out io.Writer) (int, error) {
	name, err := a.container(p, container)
	if err != nil {
		return 0, err
	}
	// Stdout and stderr may be copied by two goroutines: one lock keeps
	// their writes whole and out used by one at a time.
	lw := &lockedWriter{w: out}
	code, err := a.rtReady().Exec(ctx, p.Name, name, containers.ExecOptions{Args: cmd, Stdout: lw, Stderr: lw})
	switch {
	case errors.Is(err, containers.ErrNotFound):
		return 0, fmt.Errorf("%s/%s: %w", p.Name, name, api.ErrNoContainer)
	case errors.Is(err, containers.ErrNotRunning):
		return 0, fmt.Errorf("%s/%s: %w", p.Name, name, api.ErrNotRunning)
	}
	return code, err
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu sync.Mutex // protects w
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// plainLog turns the runtime's CRI log lines ("TIMESTAMP STREAM F|P LINE")
// into the lines themselves; a partial (P) line is continued without a
// newline.
func plainLog(rc io.ReadCloser) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		br := bufio.NewReaderSize(rc, 64<<10)
		var err error
		for {
			var line []byte
			line, err = br.ReadBytes('\n')
			if len(line) > 0 {
				if _, werr := pw.Write(plainLine(line)); werr != nil {
					err = werr
					break
				}
			}
			if err != nil {
				break
			}
		}
		rc.Close()
		if errors.Is(err, io.EOF) {
			err = nil
		}
		pw.CloseWithError(err)
	}()
	return &pipeCloser{PipeReader: pr, src: rc}
}

// plainLine strips the timestamp, stream and tag of one CRI line.
func plainLine(line []byte) []byte {
	body := bytes.TrimSuffix(line, []byte("\n"))
	f := bytes.SplitN(body, []byte(" "), 4)
	if len(f) < 3 {
		return line
	}
	msg := []byte{}
	if len(f) == 4 {
		msg = f[3]
	}
	out := append([]byte(nil), msg...)
	if string(f[2]) != "P" {
		out = append(out, '\n')
	}
	return out
}

// pipeCloser closes the source too, which ends a followed log at once.
type pipeCloser struct {
	*io.PipeReader
	src io.Closer
}

func (p *pipeCloser) Close() error {
	p.src.Close()
	return p.PipeReader.Close()
}
