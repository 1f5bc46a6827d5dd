package configs

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the *.golden files of testdata/bad from the current output")

// TestBadManifestsGolden parses every testdata/bad/*.toml and compares the
// error text with its *.golden file. The golden files were checked by eye:
// regenerate them with -update only when a message changes on purpose, and
// read the diff.
func TestBadManifestsGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/bad/*.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) < 25 {
		t.Fatalf("only %d bad inputs; want at least 25", len(inputs))
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".toml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			m, err := ParseManifest(filepath.Base(in), data)
			if err == nil {
				t.Fatalf("no error; manifest %+v", m)
			}
			if m != nil {
				t.Errorf("manifest returned with an error")
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error is %T, not ErrorList", err)
			}
			for _, fe := range list {
				if fe.Line == 0 || fe.Col == 0 || fe.File != filepath.Base(in) {
					t.Errorf("error without position: %q", fe.Error())
				}
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(in, ".toml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("errors differ from %s\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}
