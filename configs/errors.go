package configs

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// FieldError is one problem in a manifest or config: where it is (File,
// Line and Col, 1-based; Line is 0 when the spec did not come from a file),
// which field (a dotted path such as "app.web.container.http.memory") and
// what is wrong with it.
type FieldError struct {
	File      string
	Line, Col int
	Field     string
	Msg       string

	path  []string // Field as keys; index elements start with idxMark
	atKey bool     // the position is the key's, not the value's
	err   error    // wrapped cause, e.g. an I/O error
}

// Error formats e as "file:line:col: field: msg", leaving out what is
// unknown.
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d:%d", e.Line, e.Col)
		}
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the cause of e, if any (an I/O error for a file that could
// not be read).
func (e *FieldError) Unwrap() error { return e.err }

// ErrorList holds every error found in a file (or in several). It is never
// empty when returned as an error.
type ErrorList []*FieldError

// Error joins the errors, one per line.
func (l ErrorList) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap returns the errors of l, for errors.As and errors.Is.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// err returns l as an error, or nil if l is empty.
func (l ErrorList) err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}

// sortByPosition orders l by file, line and column; errors at the same
// place keep their order.
func (l ErrorList) sortByPosition() {
	slices.SortStableFunc(l, func(a, b *FieldError) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
	})
}

// idxMark starts a path element that is an array index.
const idxMark = "\x00"

// path is a field path as keys, e.g. ["app", "web", "replicas"].
type path []string

// with returns a new path with elems appended; p is not changed.
func (p path) with(elems ...string) path {
	q := make(path, 0, len(p)+len(elems))
	return append(append(q, p...), elems...)
}

// index returns a new path with the array index i appended.
func (p path) index(i int) path { return p.with(idxMark + strconv.Itoa(i)) }

// String writes p as TOML would: dotted, quoting keys that are not bare.
func (p path) String() string {
	var b strings.Builder
	for i, k := range p {
		if strings.HasPrefix(k, idxMark) {
			b.WriteString("[" + k[len(idxMark):] + "]")
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		if isBareKey(k) {
			b.WriteString(k)
		} else {
			b.WriteString(strconv.Quote(k))
		}
	}
	return b.String()
}

// isBareKey reports whether k can be written unquoted in TOML.
func isBareKey(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// errs collects field errors during decoding and validation.
type errs struct {
	list ErrorList
}

// add records a problem with the value at p.
func (e *errs) add(p path, format string, args ...any) {
	e.list = append(e.list, &FieldError{Field: p.String(), Msg: fmt.Sprintf(format, args...), path: p})
}

// addKey records a problem with the key at p itself (an unknown key, a bad
// name); its position is the key's.
func (e *errs) addKey(p path, format string, args ...any) {
	e.list = append(e.list, &FieldError{Field: p.String(), Msg: fmt.Sprintf(format, args...), path: p, atKey: true})
}

// suggest returns the candidate closest to key, or "" when none is close
// enough to be a likely typo.
func suggest(key string, candidates []string) string {
	norm := func(s string) string { return keyNormalizer.Replace(strings.ToLower(s)) }
	best, bestDist := "", 3
	for _, c := range candidates {
		if norm(c) == norm(key) {
			return c
		}
		d := levenshtein(key, c)
		if d < bestDist && d <= max(1, len(c)/3) {
			best, bestDist = c, d
		}
	}
	return best
}

// keyNormalizer removes what people mix up between key styles.
var keyNormalizer = strings.NewReplacer("_", "", "-", "", " ", "")

// levenshtein is the edit distance between a and b, in bytes.
func levenshtein(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
