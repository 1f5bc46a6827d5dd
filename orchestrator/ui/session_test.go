package ui

import (
	"testing"
	"time"
)

func TestSessionTable(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	tab := newSessions(3, time.Hour, 10*time.Minute)
	tab.now = func() time.Time { return now }
	var ids []string
	for range 5 {
		ids = append(ids, tab.create("tok").id)
		now = now.Add(time.Second)
	}
	if n := tab.len(); n != 3 {
		t.Fatalf("%d sessions held, want the bound 3", n)
	}
	if tab.get(ids[0]) != nil || tab.get(ids[1]) != nil {
		t.Errorf("the sessions idle longest were kept")
	}
	if tab.get(ids[4]) == nil {
		t.Fatalf("the newest session is gone")
	}
	now = now.Add(9 * time.Minute)
	if tab.get(ids[4]) == nil {
		t.Fatalf("a session used 9 minutes ago expired (idle limit 10)")
	}
	now = now.Add(11 * time.Minute)
	if tab.get(ids[4]) != nil {
		t.Errorf("a session idle 11 minutes lives")
	}
	s := tab.create("tok")
	for range 7 {
		now = now.Add(9 * time.Minute)
		tab.get(s.id)
	}
	if tab.get(s.id) != nil {
		t.Errorf("a session lives past its 1h lifetime")
	}
}

// TestSessionsPerToken: signing in again and again with one token ends
// that token's own oldest sessions, never another token's.
func TestSessionsPerToken(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	tab := newSessions(4, time.Hour, 10*time.Minute)
	tab.now = func() time.Time { return now }
	tab.perToken = 2
	admin := tab.create("admin-token")
	now = now.Add(time.Second)
	var reader []string
	for range 10 {
		reader = append(reader, tab.create("read-token").id)
		now = now.Add(time.Second)
	}
	if tab.get(admin.id) == nil {
		t.Fatalf("another token's sign-ins ended the admin's session")
	}
	if tab.get(reader[9]) == nil || tab.get(reader[8]) == nil {
		t.Fatalf("the read token's newest sessions are gone")
	}
	if tab.get(reader[7]) != nil {
		t.Errorf("the read token holds more than 2 sessions")
	}
}
