package cli

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FormatAge formats a duration the way kubectl's AGE column does: 45s, 3m,
// 2h, 5d.
func FormatAge(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < 2*time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < 10*time.Minute:
		m := int(d.Minutes())
		if s := int(d.Seconds()) % 60; s != 0 {
			return fmt.Sprintf("%dm%ds", m, s)
		}
		return fmt.Sprintf("%dm", m)
	case d < 3*time.Hour:
		return strconv.Itoa(int(d.Minutes())) + "m"
	case d < 48*time.Hour:
		h := int(d.Hours())
		if m := int(d.Minutes()) % 60; m != 0 && d < 8*time.Hour {
			return fmt.Sprintf("%dh%dm", h, m)
		}
		return fmt.Sprintf("%dh", h)
	case d < 365*24*time.Hour:
		return strconv.Itoa(int(d.Hours()/24)) + "d"
	}
	return strconv.Itoa(int(d.Hours()/24/365)) + "y"
}

// FormatCPU formats thousandths of a core: "2", "1.5", "250m".
func FormatCPU(milli int64) string {
	switch {
	case milli == 0:
		return "0"
	case milli%1000 == 0:
		return strconv.FormatInt(milli/1000, 10)
	case milli < 1000:
		return strconv.FormatInt(milli, 10) + "m"
	}
	return strconv.FormatFloat(float64(milli)/1000, 'f', -1, 64)
}

// FormatBytes formats a size with a binary unit, rounded to one decimal:
// "512Mi", "1.5Gi".
func FormatBytes(b int64) string {
	const unit = 1024
	if b < unit {
		return strconv.FormatInt(b, 10)
	}
	units := []string{"Ki", "Mi", "Gi", "Ti", "Pi", "Ei"}
	v, i := float64(b)/unit, 0
	for v >= unit && i < len(units)-1 {
		v /= unit
		i++
	}
	return strconv.FormatFloat(float64(int64(v*10+0.5))/10, 'f', -1, 64) + units[i]
}

// FormatLabels formats labels as k=v pairs sorted by key, or "<none>".
func FormatLabels(l map[string]string) string {
	if len(l) == 0 {
		return "<none>"
	}
	s := make([]string, 0, len(l))
	for _, k := range slices.Sorted(maps.Keys(l)) {
		s = append(s, k+"="+l[k])
	}
	return strings.Join(s, ",")
}
