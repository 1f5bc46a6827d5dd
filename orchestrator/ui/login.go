package ui

import (
	"net/http"
	"strings"
)

// loginPage shows the sign-in form.
func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	p := &page{Title: "Sign in"}
	switch r.URL.Query().Get("why") {
	case "expired":
		p.Error = "Your session ended: the token was revoked or has expired. Sign in again."
	case "forbidden":
		p.Error = "That token may not use the console."
	}
	c.render(w, r, "login", http.StatusOK, p)
}

// login signs in with the form's token: a read or admin token of `skiff
// token create`, checked by the API as a bearer token would be. A join
// token or anything else is refused.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if !sameOrigin(r) {
		http.Error(w, "refused: cross-site sign-in", http.StatusForbidden)
		return
	}
	bearer := strings.TrimSpace(r.PostFormValue("token"))
	// `skiff token create` prints K10<CA hash>::<id>.<secret>; the API
	// checks the part after "::".
	if _, after, ok := strings.Cut(bearer, "::"); ok {
		bearer = after
	}
	fail := func(msg string) {
		c.log.Info("console sign-in refused", "remote", r.RemoteAddr, "why", msg)
		c.render(w, r, "login", http.StatusUnauthorized, &page{Title: "Sign in", Error: msg})
	}
	if bearer == "" {
		fail("Paste a token made with skiff token create --role read (or admin).")
		return
	}
	id, err := c.api.AuthenticateBearer(bearer)
	if err != nil {
		fail("Unknown, revoked or expired token.")
		return
	}
	if c.api.Authorize(id, "GET /v1/apps", r) != nil {
		fail("A " + id.Role + " token may not use the console: use a read or admin token.")
		return
	}
	s := c.sessions.create(bearer)
	setCookie(w, r, s, int(c.cfg.SessionTTL.Seconds()))
	c.log.Info("console sign-in", "by", id.String(), "remote", r.RemoteAddr)
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}

// logout ends the session.
func (c *Console) logout(w http.ResponseWriter, r *http.Request, u *user) {
	if !sameOrigin(r) || !u.sess.csrfOK(r) {
		http.Error(w, "refused: missing or wrong CSRF token", http.StatusForbidden)
		return
	}
	c.sessions.drop(u.sess.id)
	setCookie(w, r, nil, -1)
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}
