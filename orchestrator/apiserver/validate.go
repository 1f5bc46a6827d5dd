package apiserver

import (
	"github.com/skiff-edge/skiff/configs"
)

// The validation of specs is configs' (the same rules `skiff apply` checks
// locally); its field paths match a manifest's ("app.web.replicas").

func validateApp(name string, a *configs.AppSpec) error { return configs.ValidateApp(name, a) }

func validateService(name string, sv *configs.ServiceSpec) error {
	return configs.ValidateService(name, sv)
}

func validateManifest(m *configs.Manifest) error { return m.Validate() }
