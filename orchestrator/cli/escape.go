package cli

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Escape makes server-supplied text safe to print on a terminal. Every
// string the CLI prints from the server (names, labels, images, messages,
// event messages, error messages, table cells, describe values) goes
// through it, because that text may come from a compromised or buggy node:
// an event message holding "\x1b[2J" or "\r" must not clear the screen,
// move the cursor or overwrite the line before it.
//
// It escapes, in the style of strconv.Quote but without the quotes and
// leaving printable text (backslashes included) as it is:
//   - \n, \r and \t as those two characters: a message stays on its line
//     and a table cell in its column;
//   - the other C0 controls, DEL and C1 controls (ESC, CSI, BEL...) as
//     \xNN or \u00NN;
//   - Unicode's bidirectional overrides and line/paragraph separators as
//     \uNNNN, which reorder or break what follows on some terminals;
//   - bytes that are not UTF-8 as \xNN (a lone 0x9b is a CSI on 8-bit
//     terminals).
//
// `skiff logs` and `skiff exec` do not use it: their output is the
// container's own bytes, copied raw like `kubectl logs` and `docker logs`
// do, so that a program's colors and progress bars work and its output can
// be piped byte for byte; those commands print nothing the server made up.
// -o json output is encoding/json's, which escapes C0 controls and the
// line separators; escapeJSON escapes the rest.
func Escape(s string) string {
	i := strings.IndexFunc(s, needsEscape)
	if i < 0 && utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for len(s) > 0 {
		r, size := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[0])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case needsEscape(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[:size])
		}
		s = s[size:]
	}
	return b.String()
}

// needsEscape reports whether r is a control (C0, DEL, C1), a
// bidirectional control, or a line or paragraph separator.
func needsEscape(r rune) bool {
	switch {
	case r < 0x20, r >= 0x7f && r <= 0x9f:
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	case r == 0x2028, r == 0x2029:
		return true
	}
	return false
}

// escapeJSON escapes in encoding/json's output what it leaves raw and
// needsEscape does not want on a terminal: DEL, the C1 controls and the
// bidirectional controls, as \uNNNN. Such characters can only be inside
// JSON strings, where \uNNNN means the same: the JSON stays equal.
func escapeJSON(b []byte) []byte {
	// Not C0: encoding/json escapes those in strings, and the ones
	// outside strings are its own newlines and indentation.
	raw := func(r rune) bool { return r >= 0x7f && needsEscape(r) }
	if !bytes.ContainsFunc(b, raw) {
		return b
	}
	out := make([]byte, 0, len(b)+16)
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if raw(r) {
			out = fmt.Appendf(out, `\u%04x`, r)
		} else {
			out = append(out, b[:size]...)
		}
		b = b[size:]
	}
	return out
}

// escapeAll is Escape of every cell of a row.
func escapeAll(r []string) []string {
	out := make([]string, len(r))
	for i, c := range r {
		out[i] = Escape(c)
	}
	return out
}
