package ui_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

// artifactDir is where the browser tests write their screenshots:
// $SKIFF_UI_ARTIFACTS, else a directory under the system's temp dir.
func artifactDir(t testing.TB) string {
	dir := os.Getenv("SKIFF_UI_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "skiff-ui-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func screenshot(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	f := filepath.Join(artifactDir(t), name)
	if err := os.WriteFile(f, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", f)
}

// run runs the steps in the tab with a deadline and fails the test on
// an error.
func run(t testing.TB, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the tab.
func eval[T any](t testing.TB, ctx context.Context, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// until waits for a JavaScript predicate to hold in the tab.
func until(t testing.TB, ctx0 context.Context, what, expr string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx0, timeout+10*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
		html, _ := chromedp.Run(ctx, chromedp.Evaluate[string]("document.body ? document.body.innerText : ''"))
		var tab string
		if l, ok := tabLogs.Load(ctx0); ok {
			tab = l.(*tabLog).String()
		}
		t.Fatalf("waiting for %s (%s): %v\npage:\n%s\nthe tab's requests, stream events and console (last %d):\n%s", what, expr, err, html, tabLogLines, tab)
	}
}

func login(t testing.TB, ctx context.Context, base, token string) {
	t.Helper()
	run(t, ctx, "sign in",
		chromedp.Navigate(base+"/ui/login"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SetValue(chromedp.ID("token"), token),
		chromedp.Click(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.ID("nodes")),
	)
}

// webManifest is examples/web.toml with this run's node port.
func webManifestFile(t testing.TB, n *node) string {
	b, err := os.ReadFile("../../examples/web.toml")
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(n.dir, "web.toml")
	s := strings.Replace(string(b), "node_port = 30080", fmt.Sprintf("node_port = %d", n.nodePort), 1)
	if err := os.WriteFile(f, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestConsoleInBrowser runs examples/web.toml on a real `skiff server
// --agent` and works the console in headless Chromium: a read-only
// sign-in, a scale seen live, a pod deleted and replaced, a log followed,
// a manifest with an error, a cross-site post and a revoked token.
func TestConsoleInBrowser(t *testing.T) {
	bn := newBrowserNet(t)
	n := startNode(t, bn.hostIP)
	browser := newBrowser(t, bn)
	if out, err := n.skiff("apply", "-f", webManifestFile(t, n)); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	n.waitFor("3 ready pods of web", 90*time.Second, func() bool { return n.readyPods("web") == 3 })
	base := "https://" + n.apiAddr
	readTok, readID := n.token(api.RoleRead)
	adminTok, _ := n.token(api.RoleAdmin)
	reader, admin := newTab(t, browser), newTab(t, browser)

	t.Run("no session redirects to login", func(t *testing.T) {
		run(t, reader, "open the app page", chromedp.Navigate(base+"/ui/apps/web"), chromedp.WaitVisible(chromedp.ID("token")))
		if loc := eval[string](t, reader, "location.pathname"); loc != "/ui/login" {
			t.Errorf("at %s, want /ui/login", loc)
		}
	})

	t.Run("read-only", func(t *testing.T) {
		login(t, reader, base, readTok)
		until(t, reader, "the node and the app", fmt.Sprintf(
			`document.getElementById("nodes").innerText.includes(%q) && document.querySelector('#apps tr[data-app="web"]') !== null`, n.name), 30*time.Second)
		run(t, reader, "open the app page", chromedp.Navigate(base+"/ui/apps/web"), chromedp.WaitVisible(chromedp.ID("ready")))
		if eval[bool](t, reader, `document.getElementById("scale") !== null || document.querySelector("button.delete") !== null`) {
			t.Errorf("a read-only session sees scale or delete controls")
		}
		res, err := chromedp.Call(reader, network.GetCookies, network.GetCookiesParams{})
		if err != nil {
			t.Fatal(err)
		}
		var sess *network.Cookie
		for _, c := range res.Cookies {
			if c.Name == "skiff_session" {
				sess = c
			}
		}
		if sess == nil || !sess.HTTPOnly || !sess.Secure || sess.SameSite != network.CookieSameSiteStrict {
			t.Errorf("session cookie %+v: want HttpOnly, Secure, SameSite=Strict", sess)
		}
		if eval[string](t, reader, "document.cookie") != "" {
			t.Errorf("the page's script can read a cookie")
		}
	})

	t.Run("admin scales 3 to 5, seen live", func(t *testing.T) {
		login(t, admin, base, adminTok)
		screenshot(t, admin, "ui-overview.png")
		// A figure, not an assertion: the overview's first contentful paint.
		fcp := eval[float64](t, admin, `(performance.getEntriesByName("first-contentful-paint")[0] || {startTime: -1}).startTime`)
		t.Logf("overview first contentful paint: %.0f ms after navigation start", fcp)
		run(t, admin, "open the app page", chromedp.Navigate(base+"/ui/apps/web"), chromedp.WaitVisible(chromedp.ID("replicas")))
		screenshot(t, admin, "ui-app.png")
		run(t, admin, "scale to 5",
			chromedp.SetValue(chromedp.ID("replicas"), "5"),
			chromedp.Click(chromedp.ID("scale-btn")),
			chromedp.WaitVisible(chromedp.ID("flash")),
		)
		// From here on the page is not reloaded: the mark would be gone.
		eval[chromedp.Void](t, admin, "window.__mark = 1")
		until(t, admin, "5/5 ready without a reload", `window.__mark === 1 && document.getElementById("ready").textContent === "5/5"`, 2*time.Minute)
		out, err := n.skiff("get", "apps", "web")
		if err != nil || !regexp.MustCompile(`(?m)^web\s+\S+\s+5/5\s`).MatchString(out) {
			t.Errorf("skiff get apps web: %v\n%s", err, out)
		}
	})

	t.Run("delete a pod, it is replaced", func(t *testing.T) {
		// A fresh page: the note of the scale must not stand for the delete's.
		run(t, admin, "open the app page", chromedp.Navigate(base+"/ui/apps/web"), chromedp.WaitVisible(chromedp.ID("ready")))
		victim := eval[string](t, admin, `document.querySelector("#pods tr[data-pod]").dataset.pod`)
		eval[chromedp.Void](t, admin, "window.confirm = () => true")
		run(t, admin, "delete "+victim,
			chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-pod=%q] button.delete`, victim))),
			chromedp.WaitVisible(chromedp.ID("flash")),
		)
		eval[chromedp.Void](t, admin, "window.__mark = 2")
		until(t, admin, "the pod gone and 5/5 ready again, live", fmt.Sprintf(
			`window.__mark === 2 && document.querySelector('#pods tr[data-pod=%q]') === null && document.querySelectorAll("#pods tr[data-pod]").length === 5 && document.getElementById("ready").textContent === "5/5"`, victim), 2*time.Minute)
	})

	t.Run("a failed refresh is tried again", func(t *testing.T) {
		run(t, admin, "open the app page", chromedp.Navigate(base+"/ui/apps/web"), chromedp.WaitVisible(chromedp.ID("ready")))
		until(t, admin, "the live stream", `document.body.dataset.live === "1"`, 30*time.Second)
		// The browser fails every refresh of the page (as a dropped
		// connection would) while a pod is deleted and replaced, until the
		// store is quiet: only a retry of the page can show the result,
		// no change event comes after.
		var failing atomic.Bool
		var failed atomic.Int32
		var lastChange, lastFail atomic.Int64 // UnixNano
		failing.Store(true)
		fctx, stop := context.WithCancel(admin)
		defer stop()
		if err := chromedp.Listen(fctx, func(ev any) {
			if m, ok := ev.(*network.EventEventSourceMessageReceived); ok && m.EventName == "change" {
				lastChange.Store(time.Now().UnixNano())
			}
			e, ok := ev.(*fetch.EventRequestPaused)
			if !ok {
				return
			}
			go func() { // not in the listener: it must not run commands
				var err error
				if _, frag := e.Request.Headers["X-Skiff-Fragment"]; frag && failing.Load() {
					failed.Add(1)
					lastFail.Store(time.Now().UnixNano())
					_, err = chromedp.Call(fctx, fetch.FailRequest, fetch.FailRequestParams{RequestID: e.RequestID, ErrorReason: network.ErrorReasonConnectionReset})
				} else {
					_, err = chromedp.Call(fctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: e.RequestID})
				}
				if err != nil && fctx.Err() == nil {
					t.Errorf("intercepted request %s: %v", e.Request.URL, err)
				}
			}()
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := chromedp.Call(admin, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{{URLPattern: "*/ui/apps/web"}}}); err != nil {
			t.Fatal(err)
		}
		defer chromedp.Call(admin, fetch.Disable, cdp.Empty{})
		victim := n.readyPod("web")
		if err := n.c.DeletePod(context.Background(), victim); err != nil {
			t.Fatal(err)
		}
		n.waitFor("the pod replaced", 90*time.Second, func() bool {
			_, err := n.c.GetPod(context.Background(), victim)
			return client.IsNotFound(err) && n.readyPods("web") == 5
		})
		// The store is quiet when the page has heard no change for 2 s, and
		// the page's fetch of the last change failed: without a retry, it
		// shows the victim for good.
		n.waitFor("the page to hear the last change and fail to fetch it", 60*time.Second, func() bool {
			c, f := lastChange.Load(), lastFail.Load()
			return c != 0 && f > c && time.Since(time.Unix(0, c)) > 2*time.Second
		})
		failing.Store(false)
		until(t, admin, "the page to show the replaced pod", fmt.Sprintf(
			`document.querySelector('#pods tr[data-pod=%q]') === null && document.querySelectorAll("#pods tr[data-pod]").length === 5 && document.getElementById("ready").textContent === "5/5"`, victim), 30*time.Second)
		t.Logf("%d refreshes failed on purpose", failed.Load())
	})

	t.Run("follow a log live", func(t *testing.T) {
		pod := n.readyPod("web")
		run(t, admin, "open the pod page", chromedp.Navigate(base+"/ui/pods/"+pod), chromedp.WaitVisible(chromedp.ID("log")))
		until(t, admin, "the log to follow", `document.getElementById("log").dataset.following === "1"`, 30*time.Second)
		marker := fmt.Sprintf("written-after-the-page-opened-%d", time.Now().UnixNano())
		if out, err := n.skiff("exec", pod, "--", "sh", "-c", "echo "+marker+" > /proc/1/fd/1"); err != nil {
			t.Fatalf("exec: %v\n%s", err, out)
		}
		until(t, admin, "the new line in the log", fmt.Sprintf(`document.getElementById("log").textContent.includes(%q)`, marker), 30*time.Second)
	})

	t.Run("a manifest with an error is shown positioned and not applied", func(t *testing.T) {
		bad := "[app.bad]\nreplicas = -2\n\n[app.bad.container.c]\nimage = \"localhost/skiff-demo:1\"\n"
		run(t, admin, "paste and apply",
			chromedp.Navigate(base+"/ui/apply"),
			chromedp.WaitVisible(chromedp.ID("manifest")),
			chromedp.SetValue(chromedp.ID("manifest"), bad),
			chromedp.Click(chromedp.ID("apply")),
			chromedp.WaitVisible(chromedp.ID("src")),
		)
		got := eval[string](t, admin, `document.querySelector("#src li.haserr").textContent`)
		if want := "replicas = -2pasted.toml:2:12: app.bad.replicas: must be >= 0"; got != want {
			t.Errorf("the line with the error reads %q, want %q", got, want)
		}
		if _, err := n.c.GetApp(context.Background(), "bad"); err == nil {
			t.Errorf("app bad exists: the refused manifest was applied")
		}
	})

	t.Run("a cross-site post is refused", func(t *testing.T) {
		evil := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="%s/ui/apps/web/scale"><input name="replicas" value="1"></form><script>document.getElementById("f").submit()</script>`, base)
		}))
		evil.Listener.Close()
		var err error
		if evil.Listener, err = net.Listen("tcp", net.JoinHostPort(bn.hostIP, "0")); err != nil { // where the browser reaches the host
			t.Fatal(err)
		}
		evil.Start()
		defer evil.Close()
		run(t, admin, "visit the other site", chromedp.Navigate(evil.URL))
		until(t, admin, "the post to land", `location.pathname.startsWith("/ui/")`, 30*time.Second)
		body := eval[string](t, admin, "document.body.innerText")
		if !strings.Contains(body, "refused") && !strings.Contains(body, "Sign in") {
			t.Errorf("the cross-site post was not refused:\n%s", body)
		}
		app, err := n.c.GetApp(context.Background(), "web")
		if err != nil || *app.Spec.Replicas != 5 {
			t.Errorf("web after the cross-site post: %v, replicas %v; want 5", err, app.Spec.Replicas)
		}
	})

	t.Run("ui_addr serves the console alone, over plain HTTP", func(t *testing.T) {
		plain := "http://" + n.uiAddr
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.PostForm(plain+"/ui/login", map[string][]string{"token": {adminTok}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		var sess *http.Cookie
		for _, ck := range resp.Cookies() {
			if ck.Name == "skiff_session" {
				sess = ck
			}
		}
		if resp.StatusCode != http.StatusSeeOther || sess == nil || sess.Secure || !sess.HttpOnly {
			t.Errorf("sign-in on ui_addr: %d, cookie %+v; want 303 and an HttpOnly cookie without Secure (no TLS)", resp.StatusCode, sess)
		}
		for path, want := range map[string]int{"/v1/apps": http.StatusNotFound, "/healthz": http.StatusNotFound, "/": http.StatusSeeOther} {
			resp, err := c.Get(plain + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("GET %s on ui_addr: %d, want %d", path, resp.StatusCode, want)
			}
		}
	})

	t.Run("a revoked token ends its session", func(t *testing.T) {
		run(t, reader, "open the overview", chromedp.Navigate(base+"/ui/"), chromedp.WaitVisible(chromedp.ID("nodes")))
		until(t, reader, "the live stream", `document.body.dataset.live === "1"`, 30*time.Second)
		if out, err := n.skiff("token", "revoke", readID); err != nil {
			t.Fatalf("revoke: %v\n%s", err, out)
		}
		// The page navigates away while we look: ask again until it is
		// at the sign-in, loaded (its text is there to read).
		deadline := time.Now().Add(30 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(reader, 5*time.Second)
			loc, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.readyState === "complete" ? location.pathname : "(loading)"`))
			cancel()
			if err == nil && loc == "/ui/login" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the page stayed at %q (%v) after the revoke", loc, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if body := eval[string](t, reader, "document.body.innerText"); !strings.Contains(body, "token was revoked") {
			t.Errorf("the sign-in page does not say why:\n%s", body)
		}
	})
}
