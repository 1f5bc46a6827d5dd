package ui_test

import (
	"bufio"
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

func TestLoginRoles(t *testing.T) {
	p := newInproc(t)
	read, _ := p.token(api.RoleRead)
	admin, _ := p.token(api.RoleAdmin)
	join, _ := p.token(api.RoleJoin)
	tests := []struct {
		name  string
		token string
		ok    bool
	}{
		{"read token", read, true},
		{"admin token", admin, true},
		{"admin token without the CA hash", admin[strings.Index(admin, "::")+2:], true},
		{"join token", join, false},
		{"wrong secret", read[:len(read)-1] + "x", false},
		{"empty", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := p.browser()
			resp, body := b.do("POST", "/ui/login", url.Values{"token": {tc.token}}, nil)
			var sess *http.Cookie
			for _, c := range resp.Cookies() {
				if c.Name == "skiff_session" {
					sess = c
				}
			}
			if !tc.ok {
				if resp.StatusCode != http.StatusUnauthorized || sess != nil {
					t.Fatalf("got %d, cookie %v; want 401 and no cookie:\n%s", resp.StatusCode, sess, body)
				}
				return
			}
			if resp.StatusCode != http.StatusSeeOther || sess == nil {
				t.Fatalf("got %d, cookie %v; want 303 and a session cookie:\n%s", resp.StatusCode, sess, body)
			}
			if !sess.HttpOnly || !sess.Secure || sess.SameSite != http.SameSiteStrictMode || sess.Path != "/ui/" {
				t.Errorf("cookie %+v: want HttpOnly, Secure (TLS), SameSite=Strict, Path=/ui/", sess)
			}
			if strings.Contains(sess.Value, tc.token[strings.Index(tc.token, "::")+2:]) {
				t.Errorf("the cookie carries the token")
			}
		})
	}
}

func TestNoSessionRedirectsToLogin(t *testing.T) {
	p := newInproc(t)
	b := p.browser()
	for _, path := range []string{"/ui/", "/ui/apps/web", "/ui/events", "/ui/apply"} {
		resp, _ := b.get(path)
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/ui/login") {
			t.Errorf("GET %s: %d to %q, want a redirect to /ui/login", path, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	// A forged cookie is no session either.
	u, _ := url.Parse(p.srv.URL + "/ui/")
	b.c.Jar.SetCookies(u, []*http.Cookie{{Name: "skiff_session", Value: strings.Repeat("ab", 32)}})
	if resp, _ := b.get("/ui/"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("forged cookie: %d, want 303", resp.StatusCode)
	}
}

func TestReadTokenSeesAndCannotAct(t *testing.T) {
	p := newInproc(t)
	p.apply(webManifest)
	read, _ := p.token(api.RoleRead)
	b := p.browser()
	b.login(read)
	_, body := b.get("/ui/apps/web")
	if !strings.Contains(body, "App web") || strings.Contains(body, `id="scale"`) || strings.Contains(body, `class="delete"`) {
		t.Fatalf("read-only app page: want the app and no scale or delete controls:\n%s", body)
	}
	csrf := b.csrf()
	resp, body := b.do("POST", "/ui/apps/web/scale", url.Values{"csrf": {csrf}, "replicas": {"7"}}, nil)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "a read token may only GET") {
		t.Errorf("read token scale: %d, want the API's 403:\n%s", resp.StatusCode, body)
	}
	if n := p.appReplicas("web"); n != 3 {
		t.Errorf("replicas %d after a refused scale, want 3", n)
	}
	resp, body = b.do("POST", "/ui/apply", url.Values{"csrf": {csrf}, "manifest": {"[app.x]\n[app.x.container.c]\nimage = \"i\"\n"}}, nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("read token apply: %d, want 403:\n%s", resp.StatusCode, body)
	}
}

func TestCSRF(t *testing.T) {
	p := newInproc(t)
	p.apply(webManifest)
	admin, _ := p.token(api.RoleAdmin)
	b := p.browser()
	b.login(admin)
	csrf := b.csrf()
	refused := []struct {
		name string
		form url.Values
		hdr  map[string]string
	}{
		{"no token", url.Values{"replicas": {"1"}}, nil},
		{"wrong token", url.Values{"replicas": {"1"}, "csrf": {strings.Repeat("0", 64)}}, nil},
		{"other origin", url.Values{"replicas": {"1"}, "csrf": {csrf}}, map[string]string{"Origin": "https://evil.example"}},
		{"cross-site fetch", url.Values{"replicas": {"1"}, "csrf": {csrf}}, map[string]string{"Sec-Fetch-Site": "cross-site"}},
	}
	for _, tc := range refused {
		resp, body := b.do("POST", "/ui/apps/web/scale", tc.form, tc.hdr)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %d, want 403:\n%s", tc.name, resp.StatusCode, body)
		}
	}
	if n := p.appReplicas("web"); n != 3 {
		t.Fatalf("replicas %d after refused posts, want 3", n)
	}
	resp, body := b.do("POST", "/ui/apps/web/scale", url.Values{"replicas": {"4"}, "csrf": {csrf}}, map[string]string{"Origin": p.srv.URL})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("scale with the token: %d:\n%s", resp.StatusCode, body)
	}
	if n := p.appReplicas("web"); n != 4 {
		t.Errorf("replicas %d, want 4", n)
	}
}

func TestRevokedTokenEndsSession(t *testing.T) {
	p := newInproc(t)
	read, id := p.token(api.RoleRead)
	b := p.browser()
	b.login(read)
	// An open page's live stream ends with a signout event.
	req, _ := http.NewRequest("GET", p.srv.URL+"/ui/live", nil)
	req.Header.Set("Accept", "text/event-stream")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := b.c.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "retry:") {
		t.Fatalf("live stream starts with %q", sc.Text())
	}
	if _, err := p.st.Update(func(tx *store.Tx) error { return tx.Delete(api.KindToken, id, 0) }); err != nil {
		t.Fatal(err)
	}
	signedOut := false
	for sc.Scan() {
		if sc.Text() == "event: signout" {
			signedOut = true
			break
		}
	}
	if !signedOut {
		t.Errorf("the live stream ended without a signout event: %v", sc.Err())
	}
	r2, _ := b.get("/ui/")
	// The stream's check ended the session already: no session at all.
	if r2.StatusCode != http.StatusSeeOther || !strings.HasPrefix(r2.Header.Get("Location"), "/ui/login") {
		t.Errorf("after revoke: %d %q, want a redirect to login", r2.StatusCode, r2.Header.Get("Location"))
	}
}

func TestLiveStreamTellsChanges(t *testing.T) {
	p := newInproc(t)
	p.apply(webManifest)
	admin, _ := p.token(api.RoleAdmin)
	b := p.browser()
	b.login(admin)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", p.srv.URL+"/ui/live", nil)
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() && sc.Text() != "event: hello" {
	}
	// The change comes from another session, made in this goroutine (a
	// failing helper must not call t.Fatal from another one); the stream
	// is buffered by the kernel meanwhile.
	b2 := p.browser()
	b2.login(admin)
	if resp, body := b2.do("POST", "/ui/apps/web/scale", url.Values{"replicas": {"5"}, "csrf": {b2.csrf()}}, nil); resp.StatusCode >= 400 {
		t.Fatalf("scale: %d %s", resp.StatusCode, body)
	}
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data: ") && strings.Contains(sc.Text(), "apps") {
			return
		}
	}
	t.Fatalf("no change event naming apps: %v", sc.Err())
}

func TestStoreTextIsEscaped(t *testing.T) {
	p := newInproc(t)
	_, err := p.st.Update(func(tx *store.Tx) error {
		return tx.RecordEvent("apps/web", api.EventWarning, "Bad", `<script>alert("x")</script><img src=x onerror=alert(1)>`, "test")
	})
	if err != nil {
		t.Fatal(err)
	}
	admin, _ := p.token(api.RoleAdmin)
	b := p.browser()
	b.login(admin)
	for _, path := range []string{"/ui/", "/ui/events"} {
		_, body := b.get(path)
		if strings.Contains(body, "<script>alert") || strings.Contains(body, "<img src=x") {
			t.Errorf("%s: store text reached the page unescaped", path)
		}
		if !strings.Contains(body, "&lt;script&gt;alert") {
			t.Errorf("%s: the event is missing", path)
		}
	}
}

func TestApplyPositionedErrors(t *testing.T) {
	p := newInproc(t)
	admin, _ := p.token(api.RoleAdmin)
	b := p.browser()
	b.login(admin)
	csrf := b.csrf()
	bad := "[app.bad]\nreplicas = -2\n[app.bad.container.c]\nimage = \"x\"\ncolour = 1\n"
	resp, body := b.do("POST", "/ui/apply", url.Values{"csrf": {csrf}, "manifest": {bad}}, nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad manifest: %d", resp.StatusCode)
	}
	for _, want := range []string{
		`replicas = -2<span class="err">pasted.toml:2:12: app.bad.replicas: must be &gt;= 0</span>`,
		`colour = 1<span class="err">pasted.toml:5:1: app.bad.container.c.colour: unknown key</span>`,
		"nothing was applied",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("missing %q in:\n%s", want, body)
		}
	}
	var a api.App
	if err := p.st.Get(api.KindApp, "bad", &a); err == nil {
		t.Errorf("app bad exists after a refused apply")
	}
	resp, body = b.do("POST", "/ui/apply", url.Values{"csrf": {csrf}, "manifest": {webManifest}}, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "<td>apps/web</td><td>created</td>") {
		t.Fatalf("good manifest: %d\n%s", resp.StatusCode, body)
	}
	if n := p.appReplicas("web"); n != 3 {
		t.Errorf("web replicas %d, want 3", n)
	}
}
