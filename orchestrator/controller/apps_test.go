package controller

import (
	"reflect"
	"regexp"
	"testing"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

func TestPodName(t *testing.T) {
	re := regexp.MustCompile(`^web-abcde-[a-z0-9]{5}$`)
	taken := map[string]bool{}
	for range 50 {
		n := podName("web", "abcdef0123", func(s string) bool { return taken[s] })
		if !re.MatchString(n) || taken[n] {
			t.Fatalf("name %q: bad or repeated", n)
		}
		taken[n] = true
	}
}

func TestRecordRevision(t *testing.T) {
	spec := func(img string) *configs.AppSpec {
		return &configs.AppSpec{Containers: map[string]*configs.ContainerSpec{"main": {Image: img}}}
	}
	var st api.AppStatus
	if !recordRevision(&st, spec("v1"), "h1", t0) || !recordRevision(&st, spec("v2"), "h2", t0) {
		t.Fatal("new revisions not recorded")
	}
	if recordRevision(&st, spec("v2"), "h2", t0) {
		t.Fatal("the current revision recorded twice")
	}
	recordRevision(&st, spec("v1"), "h1", t0.Add(1))
	var got []string
	for _, r := range st.History {
		got = append(got, r.TemplateHash)
	}
	if !reflect.DeepEqual(got, []string{"h2", "h1"}) || !st.History[1].Time.Equal(t0.Add(1)) {
		t.Fatalf("history = %v, want h2 then h1 at its new time", got)
	}
	if st.History[1].Spec.Containers["main"].Image != "v1" {
		t.Fatalf("history keeps %+v, want the v1 spec", st.History[1].Spec)
	}
	for i := range 2 * maxHistory {
		recordRevision(&st, spec("x"), string(rune('a'+i)), t0)
	}
	if len(st.History) != maxHistory {
		t.Fatalf("history has %d entries, want %d", len(st.History), maxHistory)
	}
}
