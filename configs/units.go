package configs

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written as a Go duration string ("2s", "1m30s")
// in TOML and JSON.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalText writes d as "2s".
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration (use 500ms, 2s, 1m)", b)
	}
	if v < 0 {
		return fmt.Errorf("%q is negative", b)
	}
	*d = Duration(v)
	return nil
}

// Bytes is a size in bytes, written with a binary suffix ("64Mi", "1Gi") or
// as a plain number of bytes.
type Bytes int64

var byteSuffixes = []struct {
	suffix string
	mult   int64
}{
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
}

// MarshalText writes b with the largest binary suffix that divides it.
func (b Bytes) MarshalText() ([]byte, error) {
	for i := len(byteSuffixes) - 1; i >= 0; i-- {
		s := byteSuffixes[i]
		if b != 0 && int64(b)%s.mult == 0 {
			return []byte(strconv.FormatInt(int64(b)/s.mult, 10) + s.suffix), nil
		}
	}
	return []byte(strconv.FormatInt(int64(b), 10)), nil
}

// UnmarshalText reads "64Mi", "1Gi", "512Ki" or a plain number of bytes.
func (b *Bytes) UnmarshalText(text []byte) error {
	s := string(text)
	mult := int64(1)
	num := s
	for _, suf := range byteSuffixes {
		if strings.HasSuffix(s, suf.suffix) {
			mult, num = suf.mult, strings.TrimSuffix(s, suf.suffix)
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return fmt.Errorf("%q is not a size (use %s)", s, sizeHint(s))
	}
	*b = Bytes(n * mult)
	return nil
}

// sizeHint suggests the binary spelling of a size written the decimal or
// the docker way ("64MB", "64M", "1g" -> "64Mi", "64Mi", "1Gi").
func sizeHint(s string) string {
	num := strings.TrimRight(s, "bBiIkKmMgGtT ")
	suffix := strings.ToUpper(strings.TrimSpace(s[len(num):]))
	if _, err := strconv.ParseUint(num, 10, 64); err == nil && suffix != "" && !strings.HasSuffix(s, "i") {
		switch suffix[0] {
		case 'K':
			return num + "Ki"
		case 'M':
			return num + "Mi"
		case 'G':
			return num + "Gi"
		case 'T':
			return num + "Ti"
		}
	}
	return "64Mi"
}

// UnmarshalJSON reads a size string ("64Mi") or a number of bytes.
func (b *Bytes) UnmarshalJSON(data []byte) error {
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		return b.UnmarshalText([]byte(s))
	}
	if string(data) == "null" {
		return nil
	}
	var n int64
	if err := json.Unmarshal(data, &n); err != nil {
		return fmt.Errorf("%s is not a size", data)
	}
	*b = Bytes(n)
	return nil
}

// PortRef is a port given by number (8080) or by a container port's name
// ("http").
type PortRef struct {
	Number int
	Name   string
}

// IsZero reports whether no port was given.
func (p PortRef) IsZero() bool { return p.Number == 0 && p.Name == "" }

// String returns the number or the name.
func (p PortRef) String() string {
	if p.Name != "" {
		return p.Name
	}
	return strconv.Itoa(p.Number)
}

// MarshalText writes the number or the name.
func (p PortRef) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// MarshalJSON writes a number as a JSON number and a name as a string.
func (p PortRef) MarshalJSON() ([]byte, error) {
	if p.Name != "" {
		return json.Marshal(p.Name)
	}
	return []byte(strconv.Itoa(p.Number)), nil
}

// UnmarshalJSON reads a JSON number or a string (a name, or a number in a
// string). Numbers are not range-checked here; validation reports them with
// the field's path.
func (p *PortRef) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		if n, err := strconv.Atoi(s); err == nil {
			*p = PortRef{Number: n}
		} else {
			*p = PortRef{Name: s}
		}
		return nil
	}
	var n int
	if err := json.Unmarshal(data, &n); err != nil {
		return fmt.Errorf("%s is not a port number or name", data)
	}
	*p = PortRef{Number: n}
	return nil
}

// UnmarshalText reads a number or a name.
func (p *PortRef) UnmarshalText(b []byte) error {
	s := string(b)
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > 65535 {
			return fmt.Errorf("port %d is out of range 1-65535", n)
		}
		*p = PortRef{Number: n}
		return nil
	}
	if s == "" {
		return fmt.Errorf("empty port")
	}
	*p = PortRef{Name: s}
	return nil
}
