package cluster

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"strings"
)

// slogWriter turns the "[LEVEL] subsystem: message" lines that serf and
// memberlist print through their *log.Logger into slog records.
type slogWriter struct {
	logger *slog.Logger
	// onLine, when set, sees every line (whatever the level), before it
	// is logged.
	onLine func(msg string)
}

// newStdLogger returns a *log.Logger for serf and memberlist that writes to
// logger; onLine, when non-nil, sees every line.
func newStdLogger(logger *slog.Logger, onLine func(msg string)) *log.Logger {
	return log.New(&slogWriter{logger: logger, onLine: onLine}, "", 0)
}

// Write implements io.Writer: one call per log line.
func (w *slogWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimRight(p, "\n"))
	level, msg := parseLevel(line)
	if w.onLine != nil {
		w.onLine(msg)
	}
	if !w.logger.Enabled(context.Background(), level) {
		return len(p), nil
	}
	w.logger.Log(context.Background(), level, msg)
	return len(p), nil
}

// parseLevel maps serf's and memberlist's level prefix to slog. Memberlist's
// [INFO] lines (a suspect here, a refute there) are chatty in a healthy
// cluster, so they go to Debug; serf's [INFO] lines are the member events
// and stay Info.
func parseLevel(line string) (slog.Level, string) {
	prefixes := []struct {
		p string
		l slog.Level
	}{
		{"[ERR] ", slog.LevelError},
		{"[ERROR] ", slog.LevelError},
		{"[WARN] ", slog.LevelWarn},
		{"[INFO] ", slog.LevelInfo},
		{"[DEBUG] ", slog.LevelDebug},
		{"[TRACE] ", slog.LevelDebug},
	}
	for _, p := range prefixes {
		if msg, ok := strings.CutPrefix(line, p.p); ok {
			if p.l == slog.LevelInfo && strings.HasPrefix(msg, "memberlist:") {
				return slog.LevelDebug, msg
			}
			return p.l, msg
		}
	}
	return slog.LevelInfo, line
}
