package ui

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"slices"
	"sync"
	"time"
)

// cookieName is the session cookie's name.
const cookieName = "skiff_session"

// session is one signed-in browser. The token stays here, never in the
// browser: the cookie holds only the session's random id.
type session struct {
	id      string
	bearer  string // the API token, re-checked on every request
	csrf    string // the token every action form carries
	expires time.Time
	seen    time.Time // last request, for idle expiry and eviction
}

// maxSessionsPerToken bounds the sessions of one token in the table.
const maxSessionsPerToken = 32

// sessions is the server-side session table, bounded in size: when it is
// full, expired sessions go first, then the one idle longest. One token
// holds at most perToken of them: signing in again and again with one
// token ends that token's own oldest session, so that the holder of a
// token (a read token, say) cannot fill the table and sign everyone else
// out.
type sessions struct {
	max      int
	perToken int
	ttl      time.Duration // absolute lifetime
	idle     time.Duration // idle lifetime
	mu       sync.Mutex    // protects byID
	byID     map[string]*session
	now      func() time.Time
}

func newSessions(max int, ttl, idle time.Duration) *sessions {
	return &sessions{max: max, perToken: maxSessionsPerToken, ttl: ttl, idle: idle, byID: map[string]*session{}, now: time.Now}
}

// create makes a session for bearer and returns it.
func (t *sessions) create(bearer string) *session {
	now := t.now()
	s := &session{id: randomHex(32), bearer: bearer, csrf: randomHex(32), expires: now.Add(t.ttl), seen: now}
	t.mu.Lock()
	defer t.mu.Unlock()
	var mine []*session
	for _, o := range t.byID {
		if o.bearer == bearer {
			mine = append(mine, o)
		}
	}
	if len(mine) >= t.perToken {
		slices.SortFunc(mine, func(a, b *session) int { return a.seen.Compare(b.seen) })
		for _, o := range mine[:len(mine)-t.perToken+1] {
			delete(t.byID, o.id)
		}
	}
	if len(t.byID) >= t.max {
		t.evictLocked(now)
	}
	t.byID[s.id] = s
	return s
}

// evictLocked drops expired sessions and, if none was, the one idle
// longest.
func (t *sessions) evictLocked(now time.Time) {
	var oldest *session
	for id, s := range t.byID {
		if t.expiredLocked(s, now) {
			delete(t.byID, id)
			continue
		}
		if oldest == nil || s.seen.Before(oldest.seen) {
			oldest = s
		}
	}
	if len(t.byID) >= t.max && oldest != nil {
		delete(t.byID, oldest.id)
	}
}

func (t *sessions) expiredLocked(s *session, now time.Time) bool {
	return !now.Before(s.expires) || now.Sub(s.seen) >= t.idle
}

// get returns the live session of id (and marks it seen), or nil.
func (t *sessions) get(id string) *session {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.byID[id]
	if s == nil {
		return nil
	}
	if t.expiredLocked(s, now) {
		delete(t.byID, id)
		return nil
	}
	s.seen = now
	return s
}

// drop ends a session.
func (t *sessions) drop(id string) {
	t.mu.Lock()
	delete(t.byID, id)
	t.mu.Unlock()
}

// len is the number of sessions held.
func (t *sessions) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byID)
}

// fromRequest returns the session of r's cookie, or nil.
func (t *sessions) fromRequest(r *http.Request) *session {
	c, err := r.Cookie(cookieName)
	if err != nil || len(c.Value) != 64 {
		return nil
	}
	return t.get(c.Value)
}

// setCookie sends the session cookie: HttpOnly, Secure on TLS,
// SameSite=Strict, scoped to the console.
func setCookie(w http.ResponseWriter, r *http.Request, s *session, maxAge int) {
	v := ""
	if s != nil {
		v = s.id
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: v, Path: "/ui/", MaxAge: maxAge,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

// csrfOK reports whether the form's csrf field is the session's.
func (s *session) csrfOK(r *http.Request) bool {
	got := r.PostFormValue("csrf")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) == 1
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error()) // never fails on Linux
	}
	return hex.EncodeToString(b)
}
