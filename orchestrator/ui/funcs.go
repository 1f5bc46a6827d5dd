package ui

import (
	"html/template"
	"strings"
	"time"
)

// funcs are the templates' helpers. None returns template.HTML: everything
// from the store is escaped by html/template.
var funcs = template.FuncMap{
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		d := time.Since(t).Round(time.Second)
		switch {
		case d < time.Minute:
			return d.String()
		case d < time.Hour:
			return d.Round(time.Minute).String()
		}
		return d.Round(time.Hour).String()
	},
	"agop": func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return time.Since(*t).Round(time.Second).String()
	},
	"short": func(s string) string {
		if len(s) > 10 {
			return s[:10]
		}
		return s
	},
	"join": strings.Join,
	"kindName": func(obj string) []string {
		k, n, _ := strings.Cut(obj, "/")
		return []string{k, n}
	},
}
