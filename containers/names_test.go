package containers

import (
	"context"
	"errors"
	"syscall"
	"testing"
)

// TestEntryPointsRefuseBadNames needs no root: a zero Runtime is enough,
// since a bad name must be refused before any path or state is touched.
func TestEntryPointsRefuseBadNames(t *testing.T) {
	r := &Runtime{}
	ctx := context.Background()
	bad := []struct{ pod, ctr string }{
		{"web-1", "../../x"},
		{"web-1", "../../../../var/log/auth"},
		{"../..", "http"},
		{"web-1", "a/b"},
		{"web-1", ""},
		{"web-1", ".."},
		{"Web-1", "http"},
	}
	for _, b := range bad {
		ops := map[string]func() error{
			"Logs": func() error { _, err := r.Logs(ctx, b.pod, b.ctr, LogOptions{}); return err },
			"Exec": func() error {
				_, err := r.Exec(ctx, b.pod, b.ctr, ExecOptions{Args: []string{"true"}})
				return err
			},
			"Signal":          func() error { return r.Signal(b.pod, b.ctr, syscall.SIGTERM) },
			"Stats":           func() error { _, err := r.Stats(b.pod, b.ctr); return err },
			"CPUNanos":        func() error { _, err := r.CPUNanos(b.pod, b.ctr); return err },
			"ContainerStatus": func() error { _, err := r.ContainerStatus(b.pod, b.ctr); return err },
			"StopContainer":   func() error { return r.StopContainer(ctx, b.pod, b.ctr, 0) },
			"StartContainer": func() error {
				_, err := r.StartContainer(ctx, b.pod, ContainerConfig{Name: b.ctr, Image: "x"})
				return err
			},
		}
		if b.ctr == "http" {
			ops["RemovePod"] = func() error { return r.RemovePod(ctx, b.pod, 0) }
		}
		for op, f := range ops {
			if err := f(); !errors.Is(err, ErrInvalid) {
				t.Errorf("%s(%q, %q) = %v, want ErrInvalid", op, b.pod, b.ctr, err)
			}
		}
	}
}
