package examples

import (
	"path/filepath"
	"testing"

	"github.com/skiff-edge/skiff/configs"
)

// TestExamplesParse: every example manifest parses and validates, with
// its from_file paths resolved.
func TestExamplesParse(t *testing.T) {
	files, err := filepath.Glob("*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, f := range files {
		if _, err := configs.LoadManifests(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	m, err := configs.LoadManifests("site.toml")
	if err != nil {
		t.Fatal(err)
	}
	if m.Secrets["api"].Files["api-token"] == "" {
		t.Errorf("site.toml: from_file not read: %+v", m.Secrets["api"])
	}
}
