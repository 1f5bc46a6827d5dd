package orchestrator

import (
	"net/http"
	"net/http/pprof"
	"strings"
)

// withPprof serves Go's profiles under /debug/pprof/ beside h. Only the
// unix socket gets it (root only, mode 0600): a profile shows what the
// process does, which is no business of a remote client, and a CPU
// profile costs CPU. Idle budgets (docs/edge.md) were found with it:
//
//	curl --unix-socket /run/skiff/skiff.sock -o cpu.pprof 'http://x/debug/pprof/profile?seconds=60'
func withPprof(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/debug/pprof/") && r.Method == http.MethodGet {
			mux.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}
