package configs

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// The TOML library does not tell where a key is, so posIndex scans the file
// a second time, after the library has accepted it, and records where each
// key and each value starts. Because the input is known to be valid TOML the
// scanner only needs to find keys, values and their ends, not to check them.

// pos is a 1-based line and column (in characters).
type pos struct{ line, col int }

// posEntry is where a key and its value start. For a table from a
// [header], the key is its part of the header and the value the '['.
type posEntry struct{ key, val pos }

// posIndex maps a path (joined with pathSep) to where it was first defined.
type posIndex map[string]posEntry

const pathSep = "\x1f"

// lookup finds the position for an error at p: the key or the value itself,
// or else the key of its nearest ancestor that is in the file (a missing
// field is reported at its table).
func (ix posIndex) lookup(p path, atKey bool) (pos, bool) {
	if e, ok := ix[strings.Join(p, pathSep)]; ok {
		if atKey {
			return e.key, true
		}
		return e.val, true
	}
	for n := len(p) - 1; n > 0; n-- {
		if e, ok := ix[strings.Join(p[:n], pathSep)]; ok {
			return e.key, true
		}
	}
	return pos{}, false
}

// scanner walks TOML text, tracking line and column.
type scanner struct {
	s         string
	i         int
	line, col int
	ix        posIndex
}

// indexPositions scans valid TOML and returns where its keys are.
func indexPositions(data []byte) (ix posIndex) {
	sc := &scanner{s: string(data), line: 1, col: 1, ix: posIndex{}}
	ix = sc.ix
	defer func() {
		// The input was accepted by the parser, so this cannot happen; if
		// the scanner ever disagrees with it, positions fall back to
		// ancestors rather than failing the parse.
		_ = recover()
	}()
	sc.document()
	return sc.ix
}

func (sc *scanner) eof() bool { return sc.i >= len(sc.s) }

func (sc *scanner) peek() byte {
	if sc.eof() {
		return 0
	}
	return sc.s[sc.i]
}

func (sc *scanner) here() pos { return pos{sc.line, sc.col} }

// next consumes one character.
func (sc *scanner) next() {
	if sc.eof() {
		return
	}
	if sc.s[sc.i] == '\n' {
		sc.line++
		sc.col = 1
		sc.i++
		return
	}
	_, n := utf8.DecodeRuneInString(sc.s[sc.i:])
	sc.i += n
	sc.col++
}

func (sc *scanner) hasPrefix(p string) bool { return strings.HasPrefix(sc.s[sc.i:], p) }

// skipSpace skips blanks, and newlines and comments too when nl is set.
func (sc *scanner) skipSpace(nl bool) {
	for !sc.eof() {
		switch c := sc.peek(); {
		case c == ' ' || c == '\t':
			sc.next()
		case nl && (c == '\n' || c == '\r'):
			sc.next()
		case nl && c == '#':
			sc.skipComment()
		default:
			return
		}
	}
}

func (sc *scanner) skipComment() {
	for !sc.eof() && sc.peek() != '\n' {
		sc.next()
	}
}

// record notes p at k and v unless p was seen before.
func (sc *scanner) record(p path, k, v pos) {
	key := strings.Join(p, pathSep)
	if _, ok := sc.ix[key]; !ok {
		sc.ix[key] = posEntry{k, v}
	}
}

func (sc *scanner) document() {
	var table path
	for {
		sc.skipSpace(true)
		if sc.eof() {
			return
		}
		if sc.peek() == '[' {
			start := sc.here()
			sc.next()
			if sc.peek() == '[' {
				sc.next()
			}
			sc.skipSpace(false)
			keys, starts := sc.key()
			for n := 1; n <= len(keys); n++ {
				sc.record(keys[:n], starts[n-1], start)
			}
			table = keys
			for !sc.eof() && sc.peek() != ']' {
				sc.next()
			}
			for sc.peek() == ']' {
				sc.next()
			}
		} else {
			sc.keyValue(table)
		}
		sc.skipSpace(false)
		if sc.peek() == '#' {
			sc.skipComment()
		}
	}
}

// keyValue scans "a.b = value" inside table.
func (sc *scanner) keyValue(table path) {
	keys, starts := sc.key()
	for n := 1; n < len(keys); n++ {
		sc.record(table.with(keys[:n]...), starts[n-1], starts[n-1])
	}
	full := table.with(keys...)
	sc.skipSpace(false)
	if sc.peek() == '=' {
		sc.next()
	}
	sc.skipSpace(false)
	sc.record(full, starts[len(starts)-1], sc.here())
	sc.value(full)
}

// key scans a dotted key and returns its parts and where each starts.
func (sc *scanner) key() ([]string, []pos) {
	var keys []string
	var starts []pos
	for {
		sc.skipSpace(false)
		starts = append(starts, sc.here())
		switch sc.peek() {
		case '"':
			keys = append(keys, sc.basicString())
		case '\'':
			keys = append(keys, sc.literalString())
		default:
			b := sc.i
			for !sc.eof() && isBareKeyByte(sc.peek()) {
				sc.next()
			}
			keys = append(keys, sc.s[b:sc.i])
		}
		sc.skipSpace(false)
		if sc.peek() != '.' {
			return keys, starts
		}
		sc.next()
	}
}

func isBareKeyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// value scans one value at p, recording the keys of inline tables and the
// elements of arrays.
func (sc *scanner) value(p path) {
	switch {
	case sc.peek() == '{':
		sc.next()
		for {
			sc.skipSpace(true)
			if sc.eof() {
				return
			}
			if sc.peek() == '}' {
				sc.next()
				return
			}
			if sc.peek() == ',' {
				sc.next()
				continue
			}
			sc.keyValue(p)
		}
	case sc.peek() == '[':
		sc.next()
		for i := 0; ; {
			sc.skipSpace(true)
			if sc.eof() {
				return
			}
			switch sc.peek() {
			case ']':
				sc.next()
				return
			case ',':
				sc.next()
				continue
			}
			ep := p.index(i)
			sc.record(ep, sc.here(), sc.here())
			sc.value(ep)
			i++
		}
	case sc.hasPrefix(`"""`):
		sc.multiline(`"""`, true)
	case sc.hasPrefix(`'''`):
		sc.multiline(`'''`, false)
	case sc.peek() == '"':
		sc.basicString()
	case sc.peek() == '\'':
		sc.literalString()
	default:
		// Numbers, booleans, datetimes (which may hold one space).
		for !sc.eof() && !strings.ContainsRune(",]}\n\r#", rune(sc.peek())) {
			sc.next()
		}
	}
}

// basicString scans "..." and returns its content with escapes decoded.
func (sc *scanner) basicString() string {
	sc.next()
	var b strings.Builder
	for !sc.eof() && sc.peek() != '"' && sc.peek() != '\n' {
		if sc.peek() != '\\' {
			r, n := utf8.DecodeRuneInString(sc.s[sc.i:])
			if r == utf8.RuneError && n == 1 {
				b.WriteByte(sc.s[sc.i])
			} else {
				b.WriteRune(r)
			}
			sc.next()
			continue
		}
		sc.next()
		c := sc.peek()
		sc.next()
		switch c {
		case 'b':
			b.WriteByte('\b')
		case 't':
			b.WriteByte('\t')
		case 'n':
			b.WriteByte('\n')
		case 'f':
			b.WriteByte('\f')
		case 'r':
			b.WriteByte('\r')
		case 'e':
			b.WriteByte(0x1b)
		case 'x', 'u', 'U':
			n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[c]
			end := min(sc.i+n, len(sc.s))
			v, _ := strconv.ParseUint(sc.s[sc.i:end], 16, 32)
			for range n {
				sc.next()
			}
			b.WriteRune(rune(v))
		default:
			b.WriteByte(c)
		}
	}
	sc.next()
	return b.String()
}

// literalString scans '...' and returns its content.
func (sc *scanner) literalString() string {
	sc.next()
	b := sc.i
	for !sc.eof() && sc.peek() != '\'' && sc.peek() != '\n' {
		sc.next()
	}
	s := sc.s[b:sc.i]
	sc.next()
	return s
}

// multiline scans a """...""" or ”'...”' string; up to two quotes may
// come right before the closing delimiter.
func (sc *scanner) multiline(delim string, escapes bool) {
	for range 3 {
		sc.next()
	}
	for !sc.eof() {
		if escapes && sc.peek() == '\\' {
			sc.next()
			sc.next()
			continue
		}
		if sc.hasPrefix(delim) {
			for range 3 {
				sc.next()
			}
			for range 2 {
				if sc.peek() == delim[0] {
					sc.next()
				}
			}
			return
		}
		sc.next()
	}
}
