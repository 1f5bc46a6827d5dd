package configs

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// FuzzParseManifest feeds arbitrary text to ParseManifest. It must never
// panic; every error must carry a position; and whatever parses without
// error must survive a JSON round trip (the way apply sends it to the
// server) unchanged and still valid.
func FuzzParseManifest(f *testing.F) {
	seeds, err := filepath.Glob("testdata/*/*.toml")
	if err != nil {
		f.Fatal(err)
	}
	seeds = append(seeds, "testdata/design_verbatim.toml")
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkIndexed(t, data)
		m, err := ParseManifest("fuzz.toml", data)
		if err != nil {
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error is not a non-empty ErrorList: %T %v", err, err)
			}
			for _, fe := range list {
				if fe.Line < 1 || fe.Col < 1 || fe.File != "fuzz.toml" {
					t.Fatalf("error without a position: %q", fe.Error())
				}
			}
			return
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		var back Manifest
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("unmarshal %s: %v", b, err)
		}
		if err := back.Validate(); err != nil {
			t.Fatalf("valid manifest invalid after a JSON round trip:\n%s\n%v", b, err)
		}
		b2, err := json.Marshal(&back)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, b2) {
			t.Fatalf("JSON round trip changed the manifest:\n%s\n%s", b, b2)
		}
	})
}

// checkIndexed asserts that the position scanner finds every key that the
// TOML library finds, outside arrays.
func checkIndexed(t *testing.T, data []byte) {
	var tree map[string]any
	md, err := toml.Decode(string(data), &tree)
	if err != nil {
		return
	}
	ix := indexPositions(data)
keys:
	for _, k := range md.Keys() {
		for n := 1; n < len(k); n++ {
			if md.Type(k[:n]...) == "Array" {
				continue keys
			}
		}
		if _, ok := ix[strings.Join(k, pathSep)]; !ok {
			t.Fatalf("key %q not indexed", []string(k))
		}
	}
}
