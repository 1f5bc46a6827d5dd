package apiserver

import (
	"net/http"
	"strings"
)

// Hooks for the web console (orchestrator/ui). The console signs people in
// with the API's own tokens (AuthenticateBearer), reads only what the
// route table lets the signed-in role read (Authorize) and acts through
// the API's own routes as that identity (ServeAs): its checks, limits and
// validation are the API's, not a copy. It is mounted at /ui/ (SetConsole)
// and does its own authentication with a session cookie, so TCPHandler
// lets /ui/ through without a bearer token.

// ConsolePath is where the console is mounted.
const ConsolePath = "/ui/"

// SetConsole mounts h at /ui/ on every listener (nil unmounts it: /ui/ is
// then a 404). It may be called while the server serves.
func (s *Server) SetConsole(h http.Handler) {
	if h == nil {
		s.console.Store(nil)
		return
	}
	s.console.Store(&h)
}

// serveConsole serves /ui/ through the console, if one is mounted.
func (s *Server) serveConsole(w http.ResponseWriter, r *http.Request) {
	if h := s.console.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	writeJSON(w, http.StatusNotFound, errBody("not_found", "no web console on this server"))
}

// isConsolePath reports whether path is the console's: TCPHandler leaves
// those to the console's own sign-in.
func isConsolePath(path string) bool {
	return path == "/ui" || strings.HasPrefix(path, ConsolePath)
}

// AuthenticateBearer checks a token as the TLS listener checks a bearer
// token: a token of `skiff token create` (<id>.<secret>, known, not
// expired) or the join secret. The error is the API's 401 (see
// ErrorStatus).
func (s *Server) AuthenticateBearer(bearer string) (Identity, error) {
	r := &http.Request{Header: http.Header{"Authorization": {"Bearer " + bearer}}}
	id, err := s.authenticate(r)
	if err != nil {
		return Identity{}, err
	}
	return id, nil
}

// Authorize checks id against the route table's entry of pattern
// ("METHOD PATH" as registered, e.g. "GET /v1/pods") for r: nil, or the
// API's 403 naming the rule.
func (s *Server) Authorize(id Identity, pattern string, r *http.Request) error {
	if err := s.authorize(id, accessFor(pattern), r); err != nil {
		return err
	}
	return nil
}

// ServeAs serves r through the API's routes (their access checks included)
// as id. The console uses it for every action so that an action from the
// console is exactly the API call.
func (s *Server) ServeAs(id Identity, w http.ResponseWriter, r *http.Request) {
	if isConsolePath(r.URL.Path) {
		writeJSON(w, http.StatusNotFound, errBody("not_found", "no such path: "+r.URL.Path))
		return
	}
	s.ServeHTTP(w, r.WithContext(withIdentity(r.Context(), id)))
}

// ErrorStatus returns the HTTP status of an error of this package (an
// *apiError's; 500 for others) and its message.
func ErrorStatus(err error) (int, string) {
	ae := toAPIError(err)
	return ae.status, ae.msg
}
