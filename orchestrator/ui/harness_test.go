package ui_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/apiserver"
	"github.com/skiff-edge/skiff/orchestrator/store"
	"github.com/skiff-edge/skiff/orchestrator/store/storetest"
	"github.com/skiff-edge/skiff/orchestrator/ui"
)

// inproc is a real API server and console on a real store, served over
// TLS by httptest, without nodes or pods: for the console's own logic.
type inproc struct {
	t   testing.TB
	st  *store.Store
	api *apiserver.Server
	con *ui.Console
	srv *httptest.Server
}

func newInproc(t testing.TB, opts ...func(*ui.Config)) *inproc {
	t.Helper()
	st := storetest.Open(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	a := apiserver.New(st, apiserver.Options{Logger: quiet})
	cfg := ui.Config{API: a, Store: st, Logger: quiet}
	for _, o := range opts {
		o(&cfg)
	}
	con, err := ui.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { con.Run(ctx); close(done) }()
	a.SetConsole(con)
	srv := httptest.NewTLSServer(a.TCPHandler())
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		cancel()
		<-done
	})
	return &inproc{t: t, st: st, api: a, con: con, srv: srv}
}

// token stores an API token of role and returns it as `skiff token
// create` prints it.
func (p *inproc) token(role string) (full, id string) {
	p.t.Helper()
	id = fmt.Sprintf("%012x", len(role)*1000+int(p.st.Rev()))
	secret := strings.Repeat(role[:1], 32)
	sum := sha256.Sum256([]byte(secret))
	_, err := p.st.Update(func(tx *store.Tx) error {
		return tx.Create(api.KindToken, &api.Token{Meta: api.Meta{Name: id}, Spec: api.TokenSpec{Role: role, SecretHash: hex.EncodeToString(sum[:])}})
	})
	if err != nil {
		p.t.Fatal(err)
	}
	return "K10cafe::" + id + "." + secret, id
}

// apply applies a manifest through the API's own apply.
func (p *inproc) apply(manifest string) {
	p.t.Helper()
	m, err := configs.ParseManifest("test.toml", []byte(manifest))
	if err != nil {
		p.t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/v1/apply", strings.NewReader(mustJSON(p.t, api.ApplyRequest{Manifest: *m})))
	p.api.ServeHTTP(rec, req) // the unix socket's local admin
	if rec.Code != 200 {
		p.t.Fatalf("apply: %d %s", rec.Code, rec.Body)
	}
}

// browser is an HTTP client with its own cookies that does not follow
// redirects, so that tests see them.
type browser struct {
	t    testing.TB
	base string
	c    *http.Client
}

func (p *inproc) browser() *browser {
	jar, _ := cookiejar.New(nil)
	c := new(http.Client)
	*c = *p.srv.Client() // a copy: srv.Client() is one shared client, and each browser has its own cookies
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &browser{t: p.t, base: p.srv.URL, c: c}
}

func (b *browser) do(method, path string, form url.Values, hdr map[string]string) (*http.Response, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.base+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, string(data)
}

func (b *browser) get(path string) (*http.Response, string) { return b.do("GET", path, nil, nil) }

// login signs in with token and fails the test unless it is let in.
func (b *browser) login(token string) {
	b.t.Helper()
	resp, body := b.do("POST", "/ui/login", url.Values{"token": {token}}, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" {
		b.t.Fatalf("login: %d %s %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// csrf reads the CSRF token of the session from a page.
func (b *browser) csrf() string {
	b.t.Helper()
	_, body := b.get("/ui/")
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		b.t.Fatalf("no csrf field in the overview:\n%s", body)
	}
	return m[1]
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// appReplicas reads an app's spec.replicas from the store.
func (p *inproc) appReplicas(name string) int {
	p.t.Helper()
	var a api.App
	if err := p.st.Get(api.KindApp, name, &a); err != nil {
		p.t.Fatal(err)
	}
	return *a.Spec.Replicas
}

const webManifest = `
[app.web]
replicas = 3
[app.web.container.http]
image = "localhost/skiff-demo:1"
ports = { http = 8080 }
[service.web]
app = "web"
port = 80
target_port = "http"
`
