package apiserver

import (
	"errors"
	"maps"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

// The validation of specs is configs' (the same rules `skiff apply` checks
// locally); its field paths match a manifest's ("app.web.replicas").

func (s *Server) validateApp(name string, a *configs.AppSpec) error {
	return s.withLimits(configs.ValidateApp(name, a), map[string]*configs.AppSpec{name: a}, nil)
}

func (s *Server) validateService(name string, sv *configs.ServiceSpec) error {
	return s.withLimits(configs.ValidateService(name, sv), nil, map[string]*configs.ServiceSpec{name: sv})
}

func (s *Server) validateManifest(m *configs.Manifest) error {
	return s.withLimits(m.Validate(), m.Apps, m.Services)
}

// withLimits adds the server's own checks to configs' verdict err, so that
// the answer still lists every field error: its replicas limit and its
// node's host volume policy for apps, and for services an address
// inside the server's [lb] pools (Options.CheckExternalIP), so that no
// manifest can make every node capture traffic for an address on the LAN.
func (s *Server) withLimits(err error, apps map[string]*configs.AppSpec, svcs map[string]*configs.ServiceSpec) error {
	var details []api.FieldDetail
	var l configs.ErrorList
	if errors.As(err, &l) {
		details = fieldDetails(l)
	} else if err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(apps)) {
		// Above configs.MaxReplicas configs has said it already.
		if a := apps[name]; a != nil && a.Replicas != nil && *a.Replicas > s.opts.MaxReplicas && *a.Replicas <= configs.MaxReplicas {
			details = append(details, api.FieldDetail{Field: "app." + name + ".replicas",
				Message: replicasMsg(*a.Replicas, s.opts.MaxReplicas)})
		}
		details = append(details, s.hostPathDetails("app."+name, apps[name])...)
	}
	for _, name := range slices.Sorted(maps.Keys(svcs)) {
		sv := svcs[name]
		if sv == nil || sv.WantAddress() == "" || s.opts.CheckExternalIP == nil {
			continue
		}
		if cerr := s.opts.CheckExternalIP(sv.WantAddress()); cerr != nil {
			details = append(details, api.FieldDetail{Field: "service." + name + "." + sv.AddressField(), Message: cerr.Error()})
		}
	}
	if len(details) == 0 {
		return nil
	}
	return invalidFields(details)
}

func replicasMsg(n, max int) string {
	return "must be <= " + strconv.Itoa(max) + " (the server's limit), not " + strconv.Itoa(n)
}

// hostPathDetails checks the host volumes of the app or pod template a at
// field path prefix ("app.web") against the server's own node policy
// (Options.CheckHostPath). A path that configs already refuses (relative,
// on a volume of another type) is not checked again.
func (s *Server) hostPathDetails(prefix string, a *configs.AppSpec) []api.FieldDetail {
	if s.opts.CheckHostPath == nil || a == nil {
		return nil
	}
	var details []api.FieldDetail
	for _, vn := range slices.Sorted(maps.Keys(a.Volumes)) {
		v := a.Volumes[vn]
		if v == nil || v.Type != configs.VolumeHost || !filepath.IsAbs(v.Path) {
			continue
		}
		if err := s.opts.CheckHostPath(v.Path); err != nil {
			details = append(details, api.FieldDetail{Field: prefix + ".volume." + vn + ".path",
				Message: err.Error() + " of the server's node config"})
		}
	}
	return details
}
