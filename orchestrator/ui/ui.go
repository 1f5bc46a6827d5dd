package ui

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/apiserver"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Defaults of Config.
const (
	DefaultMaxSessions = 1000
	DefaultSessionTTL  = 12 * time.Hour
	DefaultSessionIdle = time.Hour
	DefaultMaxStreams  = 100
)

// Config configures a Console.
type Config struct {
	// API is the server whose tokens, route rules and routes the console
	// uses. Required.
	API *apiserver.Server
	// Store is what the pages read and the live updates watch. Required.
	Store *store.Store
	// MaxSessions bounds the session table. Default DefaultMaxSessions.
	MaxSessions int
	// SessionTTL is a session's lifetime; SessionIdle ends it sooner when
	// unused. Defaults DefaultSessionTTL, DefaultSessionIdle.
	SessionTTL, SessionIdle time.Duration
	// MaxStreams bounds the live-update streams open at once (each open
	// page holds one). Default DefaultMaxStreams.
	MaxStreams int
	// ServiceRates, if set, gives every service's request rate now (new
	// connections per second through the nodes' load balancers, as the
	// autoscaler sees them; apiserver's load reports). The console samples
	// it every ChartStep and draws the last ChartPoints as a small chart
	// per service; nil (the default) leaves the rate column out.
	ServiceRates func() map[string]float64
	// ChartStep and ChartPoints shape the charts of request rates and
	// ready replicas: a point every ChartStep, the last ChartPoints kept,
	// in memory. Defaults DefaultChartStep, DefaultChartPoints (an hour).
	ChartStep   time.Duration
	ChartPoints int
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Console serves the web console. Create it with New; it serves once Run
// runs.
type Console struct {
	cfg      Config
	log      *slog.Logger
	api      *apiserver.Server
	st       *store.Store
	sessions *sessions
	pages    map[string]*template.Template
	mux      *http.ServeMux
	hub      *hub
	hist     *history
}

// New returns a Console.
func New(cfg Config) (*Console, error) {
	if cfg.API == nil || cfg.Store == nil {
		return nil, errors.New("ui: Config.API and Config.Store are required")
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.SessionIdle <= 0 {
		cfg.SessionIdle = DefaultSessionIdle
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = DefaultMaxStreams
	}
	if cfg.ChartStep <= 0 {
		cfg.ChartStep = DefaultChartStep
	}
	if cfg.ChartPoints <= 0 {
		cfg.ChartPoints = DefaultChartPoints
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &Console{hist: newHistory(cfg.ChartPoints), cfg: cfg, log: cfg.Logger.With("component", "ui"), api: cfg.API, st: cfg.Store,
		sessions: newSessions(cfg.MaxSessions, cfg.SessionTTL, cfg.SessionIdle), hub: newHub(cfg.Store, cfg.MaxStreams)}
	if err := c.parseTemplates(); err != nil {
		return nil, err
	}
	c.routes()
	return c, nil
}

// Run feeds the live updates from the store's watch, and samples the
// charts, until ctx ends.
func (c *Console) Run(ctx context.Context) {
	go c.sampleLoop(ctx)
	c.hub.run(ctx, c.log)
}

// ServeHTTP serves /ui/ and below.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// Pages are never framed, sniffed or cached, and send a referrer to
	// the console only ("no-referrer" would make browsers send "Origin:
	// null" with the forms, which sameOrigin refuses); scripts and styles
	// come from the console only.
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'")
	if !strings.HasPrefix(r.URL.Path, "/ui/static/") {
		h.Set("Cache-Control", "no-store")
	}
	c.mux.ServeHTTP(w, r)
}

// Handler serves the console alone (for the plain-HTTP ui_addr port):
// /ui/ and below, "/" redirects there, anything else is a 404.
func (c *Console) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/" || r.URL.Path == "/ui":
			http.Redirect(w, r, "/ui/", http.StatusSeeOther)
		case strings.HasPrefix(r.URL.Path, "/ui/"):
			c.ServeHTTP(w, r)
		default:
			http.NotFound(w, r)
		}
	})
}

func (c *Console) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	m.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /ui/login", c.loginPage)
	m.HandleFunc("POST /ui/login", c.login)
	m.HandleFunc("POST /ui/logout", c.signedIn(c.logout))
	m.HandleFunc("GET /ui/{$}", c.signedIn(c.overview))
	m.HandleFunc("GET /ui/nodes/{name}", c.signedIn(c.nodePage))
	m.HandleFunc("GET /ui/apps/{name}", c.signedIn(c.appPage))
	m.HandleFunc("POST /ui/apps/{name}/scale", c.action(c.scale))
	m.HandleFunc("POST /ui/apps/{name}/undo", c.action(c.undo))
	m.HandleFunc("GET /ui/pods/{name}", c.signedIn(c.podPage))
	m.HandleFunc("POST /ui/pods/{name}/delete", c.action(c.deletePod))
	m.HandleFunc("GET /ui/pods/{name}/log", c.signedIn(c.downloadLog))
	m.HandleFunc("GET /ui/pods/{name}/follow", c.signedIn(c.followLog))
	m.HandleFunc("GET /ui/services", c.signedIn(c.servicesPage))
	m.HandleFunc("GET /ui/events", c.signedIn(c.eventsPage))
	m.HandleFunc("GET /ui/apply", c.signedIn(c.applyPage))
	m.HandleFunc("POST /ui/apply", c.action(c.apply))
	m.HandleFunc("GET /ui/live", c.signedIn(c.live))
	c.mux = m
}

// user is the signed-in identity of a request.
type user struct {
	sess   *session
	id     apiserver.Identity
	CanAct bool // the API lets it act (admin): scale, undo, delete, apply
}

// Who names the user in the header: "admin token ab12cd".
func (u *user) Who() string { return u.id.String() }

// authed is a handler of a signed-in request.
type authed func(w http.ResponseWriter, r *http.Request, u *user)

// signedIn runs h for a request with a live session whose token still
// authenticates (a revoked or expired token ends the session) and may
// read; others go to the login page.
func (c *Console) signedIn(h authed) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u, why := c.user(r)
		if u == nil {
			if r.Header.Get("X-Skiff-Fragment") != "" || r.Header.Get("Accept") == "text/event-stream" {
				http.Error(w, why, http.StatusUnauthorized)
				return
			}
			q := url.Values{}
			if why != "" {
				q.Set("why", why)
			}
			http.Redirect(w, r, "/ui/login?"+q.Encode(), http.StatusSeeOther)
			return
		}
		h(w, r, u)
	}
}

// user authenticates r's session: the user, or nil and why not ("" for
// no session at all).
func (c *Console) user(r *http.Request) (*user, string) {
	s := c.sessions.fromRequest(r)
	if s == nil {
		return nil, ""
	}
	id, err := c.api.AuthenticateBearer(s.bearer)
	if err != nil {
		c.sessions.drop(s.id)
		return nil, "expired"
	}
	if c.api.Authorize(id, "GET /v1/apps", r) != nil {
		c.sessions.drop(s.id)
		return nil, "forbidden"
	}
	return &user{sess: s, id: id, CanAct: c.api.Authorize(id, "POST /v1/apps/{name}/scale", r) == nil}, ""
}

// action runs h for a signed-in POST that carries the session's CSRF token
// and comes from the console's own origin (403 otherwise); the API's
// route rules then decide what the identity may do.
func (c *Console) action(h authed) http.HandlerFunc {
	return c.signedIn(func(w http.ResponseWriter, r *http.Request, u *user) {
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		if !sameOrigin(r) || !u.sess.csrfOK(r) {
			c.log.Warn("action refused: missing or wrong CSRF token or foreign origin", "path", r.URL.Path, "by", u.id.String())
			http.Error(w, "refused: this form did not come from the console (missing or wrong CSRF token)", http.StatusForbidden)
			return
		}
		h(w, r, u)
	})
}

// sameOrigin refuses a request a browser marks as cross-site, or whose
// Origin is another host. Browsers that send neither pass: the CSRF token
// and the SameSite=Strict cookie still hold.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site == "cross-site" || site == "same-site" {
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// validName reads the {name} of the path, or writes a 404.
func validName(w http.ResponseWriter, r *http.Request) (string, bool) {
	n := r.PathValue("name")
	if !configs.ValidName(n) {
		http.Error(w, "no such object", http.StatusNotFound)
		return "", false
	}
	return n, true
}

// templates: one set per page, each with the layout.
var pageNames = []string{"login", "overview", "node", "app", "pod", "services", "events", "apply"}

func (c *Console) parseTemplates() error {
	c.pages = map[string]*template.Template{}
	for _, p := range pageNames {
		t, err := template.New(p).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+p+".html")
		if err != nil {
			return err
		}
		c.pages[p] = t
	}
	return nil
}

// page is what every page template gets.
type page struct {
	Title  string
	User   *user
	CSRF   string
	Nav    string
	Flash  string
	Error  string
	Data   any
	Rev    int64
	Live   bool
	RateOK bool
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// render writes page p; a request for the live fragment (the script's
// X-Skiff-Fragment) gets only the part that changes.
func (c *Console) render(w http.ResponseWriter, r *http.Request, name string, status int, p *page) {
	if p.User != nil {
		p.CSRF = p.User.sess.csrf
	}
	tmpl := "layout"
	if r.Header.Get("X-Skiff-Fragment") != "" {
		tmpl = "live"
	}
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer bufPool.Put(buf)
	if err := c.pages[name].ExecuteTemplate(buf, tmpl, p); err != nil {
		c.log.Error("render", "page", name, "err", err)
		http.Error(w, "render: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
