package configs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigsAndSecrets decodes configs, secrets, their volumes and
// env_from, and reports each mistake at its place.
func TestConfigsAndSecrets(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), []byte("PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := `
[config.site]
files = { "app.conf" = "color = blue" }

[secret.db]
from_file = "ca.pem"

[app.web.container.c]
image = "busybox"
mounts = { conf = "/etc/app", creds = "/run/creds" }
env_from = { DB = "secret:db/ca.pem", COLOR = "config:site/app.conf" }

[app.web.volume.conf]
type = "config"
name = "site"

[app.web.volume.creds]
type = "secret"
name = "db"
`
	name := filepath.Join(dir, "m.toml")
	m, err := ParseManifest(name, []byte(good))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if got := m.Secrets["db"].Files["ca.pem"]; got != "PEM" {
		t.Errorf("from_file: files = %v", m.Secrets["db"].Files)
	}
	if got := m.Apps["web"].FileRefs(); strings.Join(got, ",") != "config/site,secret/db" {
		t.Errorf("FileRefs = %v", got)
	}

	tests := []struct {
		name, toml, want string
	}{
		{"missing config", `
[config.other]
files = { a = "b" }
[app.web.container.c]
image = "busybox"
[app.web.volume.v]
type = "config"
name = "site"
`, `m.toml:8:8: app.web.volume.v.name: config "site" is not in the manifest`},
		{"no name", `
[app.web.container.c]
image = "busybox"
[app.web.volume.v]
type = "secret"
`, `app.web.volume.v.name: is required for secret volumes`},
		{"bad env_from", `
[app.web.container.c]
image = "busybox"
env_from = { X = "vault:db/x" }
`, `app.web.container.c.env_from.X: "vault:db/x" is not a reference`},
		{"missing file", `
[config.site]
files = { a = "b" }
[app.web.container.c]
image = "busybox"
env_from = { X = "config:site/nope" }
`, `config "site" has no file "nope"`},
		{"bad file name", `
[secret.db]
files = { "../x" = "b" }
`, `secret.db.files."../x": "../x" is not a valid file name`},
		{"too big", `
[secret.db]
files = { a = "` + strings.Repeat("x", MaxFilesSize+1) + `" }
`, `secret.db.files: holds 524289 bytes, more than the limit`},
		{"from_file missing", `
[config.c]
from_file = "nope.txt"
`, `m.toml:3:13: config.c.from_file: "nope.txt": stat: no such file or directory`},
		{"empty", `
[config.c]
`, `config.c: has no files`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseManifest(name, []byte(tt.toml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}
