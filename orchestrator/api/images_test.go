package api

import (
	"encoding/json"
	"slices"
	"testing"
)

// TestNodeSelectorJSON: "all" or a list, both ways; anything else refused.
func TestNodeSelectorJSON(t *testing.T) {
	for in, want := range map[string]NodeSelector{
		`"all"`:     {All: true},
		`["a","b"]`: {Names: []string{"a", "b"}},
		`[]`:        {Names: []string{}},
	} {
		var s NodeSelector
		if err := json.Unmarshal([]byte(in), &s); err != nil || s.All != want.All || !slices.Equal(s.Names, want.Names) {
			t.Errorf("%s: %+v, %v; want %+v", in, s, err, want)
		}
		b, err := json.Marshal(s)
		if err != nil || string(b) != in {
			t.Errorf("%s: marshals to %s, %v", in, b, err)
		}
	}
	for _, in := range []string{`"some"`, `3`, `{"a":1}`, `[1]`} {
		var s NodeSelector
		if err := json.Unmarshal([]byte(in), &s); err == nil {
			t.Errorf("%s: accepted as %+v", in, s)
		}
	}
}
