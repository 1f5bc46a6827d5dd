package apiserver

import (
	"net/http"
	"path/filepath"
	"strconv"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/backup"
)

// getSnapshot streams a backup of this server (orchestrator/backup): the
// store, the cluster's PKI and the secret keys, as a gzip'd tar. Admin
// only (authz.go): it holds every credential of the cluster. Any server
// answers with its own store (a follower's may lag the leader's by the
// commit latency).
func (s *Server) getSnapshot(w http.ResponseWriter, r *http.Request) {
	dir := s.opts.DataDir
	if dir == "" && s.keys.path != "" {
		dir = filepath.Dir(s.keys.path)
	}
	if dir == "" {
		s.writeError(w, r, &apiError{status: http.StatusServiceUnavailable, code: api.CodeUnavailable,
			msg: "this server keeps its secret keys in memory only (no data dir): it cannot make a backup that restores"})
		return
	}
	p, err := backup.Prepare(s.st, dir)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer p.Close()
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Content-Disposition", `attachment; filename="skiff-backup.tar.gz"`)
	w.Header().Set("Skiff-Revision", strconv.FormatInt(p.Manifest.Revision, 10))
	if _, err := p.WriteTo(w); err != nil {
		// The client sees a cut-short file, which its check refuses.
		s.log.Warn("backup cut short", "err", err)
		return
	}
	s.log.Info("backup sent", "revision", p.Manifest.Revision, "by", identityOf(r.Context()).String())
}
