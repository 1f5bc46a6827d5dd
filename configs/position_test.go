package configs

import (
	"strings"
	"testing"
)

// TestIndexPositions checks the scanner on TOML that tries to fool it:
// brackets, '=' and '#' inside strings, multi-line strings, quoted and
// dotted keys, multi-line arrays and inline tables, CRLF line ends and
// non-ASCII text (columns count characters).
func TestIndexPositions(t *testing.T) {
	doc := strings.Join([]string{
		`# [not.a.table] = 1`,                         // 1
		`title = "a [b] = # c"`,                       // 2
		`[ app . "we.b" ]  # a comment with "quotes"`, // 3
		`note = """`,                                  // 4
		`[fake.header]`,                               // 5
		`key = "x" \" """`,                            // 6
		`lit = '''C:\path\'''' # trailing`,            // 7
		`"quoted key" . sub = 'v'`,                    // 8
		`arr = [`,                                     // 9
		`  { image = "x" },  # first`,                 // 10
		`  { image = "y", env = { K = "ü" } },`,       // 11
		`]`,                                           // 12
		"crlf = 1\r",                                  // 13
		`uni = "äöü", after = 2`,                      // 14 (not valid TOML: two keys on a line; see below)
	}, "\n")
	// Line 14 is not TOML; replace it with an inline table on one line.
	doc = strings.Replace(doc, `uni = "äöü", after = 2`, `uni = { a = "äöü", after = 2 }`, 1)
	tree, perr := parseTOML("t.toml", []byte(doc))
	if perr != nil {
		t.Fatalf("test document is not valid TOML: %v", perr)
	}
	if tree == nil {
		t.Fatal("no tree")
	}
	ix := indexPositions([]byte(doc))
	tests := []struct {
		path     path
		key, val pos
	}{
		{path{"title"}, pos{2, 1}, pos{2, 9}},
		{path{"app"}, pos{3, 3}, pos{3, 1}},
		{path{"app", "we.b"}, pos{3, 9}, pos{3, 1}},
		{path{"app", "we.b", "note"}, pos{4, 1}, pos{4, 8}},
		{path{"app", "we.b", "lit"}, pos{7, 1}, pos{7, 7}},
		{path{"app", "we.b", "quoted key"}, pos{8, 1}, pos{8, 1}},
		{path{"app", "we.b", "quoted key", "sub"}, pos{8, 16}, pos{8, 22}},
		{path{"app", "we.b", "arr"}, pos{9, 1}, pos{9, 7}},
		{path{"app", "we.b", "arr"}.index(0), pos{10, 3}, pos{10, 3}},
		{path{"app", "we.b", "arr"}.index(0).with("image"), pos{10, 5}, pos{10, 13}},
		{path{"app", "we.b", "arr"}.index(1).with("env", "K"), pos{11, 26}, pos{11, 30}},
		{path{"app", "we.b", "crlf"}, pos{13, 1}, pos{13, 8}},
		{path{"app", "we.b", "uni", "after"}, pos{14, 20}, pos{14, 28}},
	}
	for _, tt := range tests {
		e, ok := ix[strings.Join(tt.path, pathSep)]
		if !ok {
			t.Errorf("%s: not indexed", tt.path)
			continue
		}
		if e.key != tt.key || e.val != tt.val {
			t.Errorf("%s: key %v value %v, want key %v value %v", tt.path, e.key, e.val, tt.key, tt.val)
		}
	}
	for _, bogus := range []path{{"not"}, {"fake"}, {"app", "we.b", "fake"}} {
		if _, ok := ix[strings.Join(bogus, pathSep)]; ok {
			t.Errorf("%s indexed from inside a comment or string", bogus)
		}
	}
}

func TestLookupFallsBackToAncestor(t *testing.T) {
	ix := indexPositions([]byte("[app.web]\nreplicas = 1\n"))
	tests := []struct {
		path  path
		atKey bool
		want  pos
	}{
		{path{"app", "web", "replicas"}, false, pos{2, 12}},
		{path{"app", "web", "replicas"}, true, pos{2, 1}},
		{path{"app", "web"}, false, pos{1, 1}},
		{path{"app", "web"}, true, pos{1, 6}},
		{path{"app", "web", "container"}, false, pos{1, 6}},
		{path{"app", "web", "container", "x", "image"}, false, pos{1, 6}},
	}
	for _, tt := range tests {
		got, ok := ix.lookup(tt.path, tt.atKey)
		if !ok || got != tt.want {
			t.Errorf("lookup(%s, %v) = %v, %v; want %v", tt.path, tt.atKey, got, ok, tt.want)
		}
	}
	if _, ok := ix.lookup(path{"service", "x"}, false); ok {
		t.Errorf("lookup of a path outside the file succeeded")
	}
}
