package store

import (
	"bytes"
	"context"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// newHCLogger gives raft (which logs with hclog) a logger that writes to
// log at the matching slog level.
func newHCLogger(log *slog.Logger) hclog.Logger {
	level := hclog.Info
	if log.Enabled(context.Background(), slog.LevelDebug) {
		level = hclog.Debug
	}
	return hclog.New(&hclog.LoggerOptions{Name: "raft", Level: level, Output: hclogWriter{log}, DisableTime: true})
}

// hclogWriter turns hclog's text lines ("[WARN]  raft: msg: k=v") into
// slog records.
type hclogWriter struct{ log *slog.Logger }

var hclogLevels = []struct {
	tag   []byte
	level slog.Level
}{
	{[]byte("[ERROR]"), slog.LevelError},
	{[]byte("[WARN]"), slog.LevelWarn},
	{[]byte("[INFO]"), slog.LevelInfo},
	{[]byte("[DEBUG]"), slog.LevelDebug},
	{[]byte("[TRACE]"), slog.LevelDebug},
}

func (w hclogWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		level, msg := slog.LevelInfo, line
		for _, l := range hclogLevels {
			if i := bytes.Index(line, l.tag); i >= 0 {
				level, msg = l.level, bytes.TrimSpace(line[i+len(l.tag):])
				break
			}
		}
		w.log.Log(context.Background(), level, string(msg))
	}
	return len(p), nil
}
