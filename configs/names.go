package configs

import (
	"regexp"
	"strconv"
	"strings"
)

var (
	nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	envRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// Label keys may carry a DNS prefix: "example.com/zone".
	labelKeyRE   = regexp.MustCompile(`^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
	labelValueRE = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$`)
	userRE       = regexp.MustCompile(`^[0-9]{1,10}(:[0-9]{1,10})?$`)
	// imageRE follows the grammar of OCI/docker image references:
	// [domain[:port]/]path[/path...][:tag][@digest].
	imageRE = regexp.MustCompile(`^` +
		`(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?/)?` +
		`[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*` +
		`(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?` +
		`(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$`)
)

// ValidName reports whether s can name an object (app, service, container,
// volume, port): a DNS label, [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63
// characters.
func ValidName(s string) bool { return len(s) <= 63 && nameRE.MatchString(s) }

// validPortName reports whether s can name a port: a valid name with at
// least one letter, so that it never reads as a port number.
func validPortName(s string) bool {
	return ValidName(s) && strings.ContainsFunc(s, func(r rune) bool { return r >= 'a' && r <= 'z' })
}

// portNameMsg explains why s is not a valid port name.
func portNameMsg(s string) string {
	if ValidName(s) {
		return quoteShort(s) + " is not a valid port name (it needs a letter)"
	}
	return nameMsg(s)
}

// nameMsg explains why s is not a valid name.
func nameMsg(s string) string {
	if len(s) > 63 {
		return "name is longer than 63 characters"
	}
	return quoteShort(s) + " is not a valid name (use lower-case letters, digits and '-', starting and ending with a letter or digit)"
}

// validImage reports whether ref is a plausible image reference.
func validImage(ref string) bool { return len(ref) <= 512 && imageRE.MatchString(ref) }

// validEnvName reports whether s can name an environment variable.
func validEnvName(s string) bool { return envRE.MatchString(s) }

// validLabel reports whether k = v is a valid node label or selector pair.
func validLabelKey(k string) bool {
	name := k[strings.LastIndexByte(k, '/')+1:]
	return len(k) <= 253 && len(name) <= 63 && labelKeyRE.MatchString(k)
}

func validLabelValue(v string) bool { return len(v) <= 63 && labelValueRE.MatchString(v) }

// checkLabels validates a label map at p.
func checkLabels(e *errs, p path, labels map[string]string) {
	for _, k := range sortedKeys(labels) {
		if !validLabelKey(k) {
			e.addKey(p.with(k), "%s is not a valid label key", quoteShort(k))
		}
		if !validLabelValue(labels[k]) {
			e.add(p.with(k), "%s is not a valid label value (letters, digits, '-', '_' and '.', at most 63)", quoteShort(labels[k]))
		}
	}
}

// quoteShort quotes s, shortened if long.
func quoteShort(s string) string {
	if len(s) > 64 {
		s = s[:61] + "..."
	}
	return strconv.Quote(s)
}
