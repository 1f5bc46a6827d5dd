package configs

import (
	"errors"
	"testing"
)

func TestValidatePod(t *testing.T) {
	good := func() *AppSpec {
		return &AppSpec{Containers: map[string]*ContainerSpec{"http": {Image: "echo:1", CPU: 0.5}}}
	}
	tests := []struct {
		name  string
		pod   string
		edit  func(a *AppSpec)
		field string // "" for valid
	}{
		{name: "valid", pod: "web-abcde-12345", edit: func(*AppSpec) {}},
		{name: "pod name", pod: "../x", edit: func(*AppSpec) {}, field: `pod."../x"`},
		{name: "container name", pod: "p", edit: func(a *AppSpec) {
			a.Containers["../../../../var/log/auth"] = &ContainerSpec{Image: "echo:1"}
		}, field: `pod.p.container."../../../../var/log/auth"`},
		{name: "cpu", pod: "p", edit: func(a *AppSpec) { a.Containers["http"].CPU = 1e300 }, field: "pod.p.container.http.cpu"},
		{name: "probe period", pod: "p", edit: func(a *AppSpec) {
			a.Containers["http"].Liveness = &Probe{TCP: true, Port: PortRef{Number: 80}, Period: 1}
		}, field: "pod.p.container.http.liveness.period"},
		{name: "no container", pod: "p", edit: func(a *AppSpec) { a.Containers = nil }, field: "pod.p.container"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := good()
			tc.edit(a)
			err := ValidatePod(tc.pod, a)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("ValidatePod: %v", err)
				}
				return
			}
			var l ErrorList
			if !errors.As(err, &l) || l[0].Field != tc.field {
				t.Fatalf("ValidatePod = %v, want an error on %s", err, tc.field)
			}
		})
	}
}
