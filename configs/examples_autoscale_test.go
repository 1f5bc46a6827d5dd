package configs

import (
	"strings"
	"testing"
)

// TestAutoscaleExample: examples/autoscale.toml loads, with every
// autoscale key set as its comments say.
func TestAutoscaleExample(t *testing.T) {
	m, err := LoadManifests("../examples/autoscale.toml")
	if err != nil {
		t.Fatal(err)
	}
	as := m.Apps["echo"].Autoscale
	if as == nil || as.Min != 1 || as.Max != 5 || as.TargetRPS != 25 || as.TargetCPU != 0.7 ||
		as.ScaleDownWindow.D().Seconds() != 30 || as.Tolerance != 0.1 {
		t.Errorf("autoscale: %+v", as)
	}
}

// TestAutoscaleKeys: the autoscale keys' bad values are errors that name
// the field.
func TestAutoscaleKeys(t *testing.T) {
	base := "[app.a.container.c]\nimage = \"x\"\ncpu = 0.1\n[app.a.autoscale]\n"
	tests := []struct{ name, body, want string }{
		{"tolerance too large", "min = 1\nmax = 2\ntarget_rps = 5\ntolerance = 1.5\n", "app.a.autoscale.tolerance"},
		{"negative window", "min = 1\nmax = 2\ntarget_rps = 5\nscale_down_window = \"-1s\"\n", "app.a.autoscale.scale_down_window"},
		{"max too large", "min = 1\nmax = 20000\ntarget_rps = 5\n", "app.a.autoscale.max"},
		{"min 0 without target_rps", "min = 0\nmax = 2\ntarget_cpu = 0.5\n", "app.a.autoscale.min"},
		{"negative idle window", "min = 0\nmax = 2\ntarget_rps = 5\nidle_window = \"-1s\"\n", "app.a.autoscale.idle_window"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseManifest("m.toml", []byte(base+tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error on %s", err, tc.want)
			}
		})
	}
	if _, err := ParseManifest("m.toml", []byte(base+"min = 1\nmax = 2\ntarget_rps = 5\nscale_down_window = \"10s\"\ntolerance = 0.2\n")); err != nil {
		t.Errorf("valid keys: %v", err)
	}
}
