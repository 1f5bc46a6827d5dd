package configs

import (
	"strings"
	"testing"
)

// TestUpdatePrepull: `prepull` under [app.NAME.update] decodes as a bool,
// is off by default, and a wrong type names file:line:column and the key.
func TestUpdatePrepull(t *testing.T) {
	const base = `[app.web.container.http]
image = "registry.local:5000/echo:1.2"
`
	m, err := ParseManifest("web.toml", []byte(base+"[app.web.update]\nprepull = true\n"))
	if err != nil {
		t.Fatal(err)
	}
	if u := m.Apps["web"].Update; u == nil || !u.Prepull {
		t.Fatalf("prepull = true decoded to %+v", u)
	}
	m, err = ParseManifest("web.toml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if m.Apps["web"].Update.Prepull {
		t.Fatal("prepull is on without the key")
	}
	_, err = ParseManifest("web.toml", []byte(base+"[app.web.update]\nprepull = \"yes\"\n"))
	if err == nil || !strings.Contains(err.Error(), "web.toml:4:11: app.web.update.prepull: expected a boolean") {
		t.Fatalf("prepull = \"yes\": %v", err)
	}
}
