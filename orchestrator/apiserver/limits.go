package apiserver

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"

	"golang.org/x/net/netutil"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// Limits. A client of the API must not be able to exhaust the server's
// goroutines, file descriptors or memory by opening connections, watch
// streams or log follows and never closing them. Each listener accepts a
// bounded number of connections at once (the next one waits in the
// kernel's backlog until one closes), and watch streams and log follows
// are bounded per client identity and in all (429 beyond).
//
// Defaults, sized for an edge cluster of a handful to a few dozen nodes on
// small boxes:
//
//   - TCP connections 256: an agent holds 3 watch streams (pods, services,
//     endpoints) and 1-2 request connections, so ~50 nodes fit with room
//     for remote CLIs; a TLS connection costs a goroutine and ~40 KB of
//     buffers, so 256 of them stay around 10 MB.
//   - unix connections 1024: the socket is root's alone (mode 0600), so
//     the cap only guards the process's file descriptors. A connection
//     over it waits in the kernel's backlog, and root's scripts that make
//     a client per call keep idle keep-alive connections for up to the
//     idle timeout: 64 froze a test harness that polled the server.
//   - watches per client 32: an agent needs 3, a `skiff get -w` 1; a
//     node identity holding more is misbehaving. The unix socket is one
//     client (every peer is root, so a bucket per uid would be one bucket).
//   - watches in all 256: no more than the TCP listener's connections.
//   - log follows per client 8, in all 32: each follow holds an open log
//     file and a reader goroutine on the node for as long as it lasts.

// Defaults of the limits in Options.
const (
	DefaultMaxConnsTCP            = 256
	DefaultMaxConnsUnix           = 1024
	DefaultMaxWatchesPerClient    = 32
	DefaultMaxWatches             = 256
	DefaultMaxLogFollowsPerClient = 8
	DefaultMaxLogFollows          = 32
)

// Limits are the bounds of Options on connections and streams. A zero
// field means its default.
type Limits struct {
	// MaxConnsTCP bounds the TLS listener's connections at once (see
	// Server.LimitTCP). Default DefaultMaxConnsTCP.
	MaxConnsTCP int
	// MaxConnsUnix bounds the unix socket's connections at once (see
	// Server.LimitUnix). Default DefaultMaxConnsUnix.
	MaxConnsUnix int
	// MaxWatchesPerClient bounds the watch streams of one identity (a
	// node, a token; the unix socket is one client). Default
	// DefaultMaxWatchesPerClient.
	MaxWatchesPerClient int
	// MaxWatches bounds all watch streams. Default DefaultMaxWatches.
	MaxWatches int
	// MaxLogFollowsPerClient bounds the log follows (?follow=1) of one
	// identity. Default DefaultMaxLogFollowsPerClient.
	MaxLogFollowsPerClient int
	// MaxLogFollows bounds all log follows. Default DefaultMaxLogFollows.
	MaxLogFollows int
}

// limitEnv names, per Limits field, the environment variable of the
// server that sets it (see Limits.FromEnv); the 429 messages name them.
var limitEnv = struct{ connsTCP, connsUnix, watchesPer, watches, followsPer, follows string }{
	"SKIFF_API_MAX_CONNS_TCP", "SKIFF_API_MAX_CONNS_UNIX",
	"SKIFF_API_MAX_WATCHES_PER_CLIENT", "SKIFF_API_MAX_WATCHES",
	"SKIFF_API_MAX_LOG_FOLLOWS_PER_CLIENT", "SKIFF_API_MAX_LOG_FOLLOWS",
}

// FromEnv sets the fields whose environment variable getenv returns
// (SKIFF_API_MAX_CONNS_TCP, SKIFF_API_MAX_CONNS_UNIX,
// SKIFF_API_MAX_WATCHES_PER_CLIENT, SKIFF_API_MAX_WATCHES,
// SKIFF_API_MAX_LOG_FOLLOWS_PER_CLIENT, SKIFF_API_MAX_LOG_FOLLOWS): an
// operator raises a limit in the service's environment without a rebuild.
// A value that is not a positive integer is an error.
func (l *Limits) FromEnv(getenv func(string) string) error {
	for _, f := range []struct {
		env string
		dst *int
	}{
		{limitEnv.connsTCP, &l.MaxConnsTCP}, {limitEnv.connsUnix, &l.MaxConnsUnix},
		{limitEnv.watchesPer, &l.MaxWatchesPerClient}, {limitEnv.watches, &l.MaxWatches},
		{limitEnv.followsPer, &l.MaxLogFollowsPerClient}, {limitEnv.follows, &l.MaxLogFollows},
	} {
		v := getenv(f.env)
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return fmt.Errorf("%s=%q: want a positive integer", f.env, v)
		}
		*f.dst = n
	}
	return nil
}

// withDefaults fills the zero (or negative) fields.
func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxConnsTCP, DefaultMaxConnsTCP)
	def(&l.MaxConnsUnix, DefaultMaxConnsUnix)
	def(&l.MaxWatchesPerClient, DefaultMaxWatchesPerClient)
	def(&l.MaxWatches, DefaultMaxWatches)
	def(&l.MaxLogFollowsPerClient, DefaultMaxLogFollowsPerClient)
	def(&l.MaxLogFollows, DefaultMaxLogFollows)
	return l
}

// LimitTCP returns ln accepting at most Limits.MaxConnsTCP connections at
// once: Accept waits until one of them closes, and the clients beyond
// wait in the kernel's backlog. Wrap the TCP listener before TLS, so that
// handshakes in progress count too.
func (s *Server) LimitTCP(ln net.Listener) net.Listener {
	return netutil.LimitListener(ln, s.opts.Limits.MaxConnsTCP)
}

// LimitUnix is LimitTCP for the unix socket, with Limits.MaxConnsUnix.
func (s *Server) LimitUnix(ln net.Listener) net.Listener {
	return netutil.LimitListener(ln, s.opts.Limits.MaxConnsUnix)
}

// streamLimit bounds the concurrent streams of one sort (watches, log
// follows) per client identity and in all.
type streamLimit struct {
	what                   string // "watch streams", "log follows"
	perClient, total       int
	perClientEnv, totalEnv string // the environment variables that raise them
	mu                     sync.Mutex
	n                      int            // streams open; protected by mu
	byClient               map[string]int // streams open per Identity.String(); protected by mu
}

func newStreamLimit(what string, perClient, total int, perClientEnv, totalEnv string) *streamLimit {
	return &streamLimit{what: what, perClient: perClient, total: total,
		perClientEnv: perClientEnv, totalEnv: totalEnv, byClient: map[string]int{}}
}

// acquire takes a slot for a stream of id, or returns a 429 naming the
// limit reached. The caller must call release exactly once when the
// stream ends (defer it: the handler returns when the request's context
// ends, also when the client vanished).
func (l *streamLimit) acquire(id Identity) (release func(), err *apiError) {
	key := id.String()
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.byClient[key] >= l.perClient:
		return nil, tooMany("too many %s from %s: %d open, the limit per client; close some, or raise it with %s in the server's environment",
			l.what, key, l.byClient[key], l.perClientEnv)
	case l.n >= l.total:
		return nil, tooMany("too many %s on this server: %d open, the limit in all; retry later, or raise it with %s in the server's environment",
			l.what, l.n, l.totalEnv)
	}
	l.n++
	l.byClient[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.n--
			if l.byClient[key]--; l.byClient[key] <= 0 {
				delete(l.byClient, key) // identities come and go: keep the map small
			}
		})
	}, nil
}

// tooMany is a 429.
func tooMany(format string, args ...any) *apiError {
	return &apiError{status: http.StatusTooManyRequests, code: api.CodeTooMany, msg: fmt.Sprintf(format, args...)}
}
