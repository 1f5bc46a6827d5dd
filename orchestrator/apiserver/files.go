package apiserver

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// Configs and secrets: named file sets that apps mount and read. A write
// that changes one gives it a new version and, in the same transaction,
// writes that version into every app that uses it (AppSpec.ContentHashes,
// part of the pod template): the app controller then rolls those apps
// through their rolling update. Secrets are sealed (secretkeys.go) before
// they are stored and leave the server in clear only to a node that runs a
// pod using them.

// kindOfRef maps a volume type / env_from kind to its store kind.
func kindOfRef(kind string) string {
	if kind == configs.KindSecret {
		return api.KindSecret
	}
	return api.KindConfig
}

// filesStatus reads the status of the config or secret kind/name in tx.
func filesStatus(tx *store.Tx, kind, name string) (api.FilesStatus, error) {
	if kind == configs.KindSecret {
		var s api.Secret
		err := tx.Get(api.KindSecret, name, &s)
		return s.Status, err
	}
	var c api.Config
	err := tx.Get(api.KindConfig, name, &c)
	return c.Status, err
}

// fillContentHashes sets spec.ContentHashes to the versions of the configs
// and secrets spec uses, read in tx. One that does not exist, or lacks a
// file env_from names, is a 400 on the field that names it.
func fillContentHashes(tx *store.Tx, app string, spec *configs.AppSpec) error {
	hashes := map[string]string{}
	look := func(field, kind, name, file string) error {
		st, err := filesStatus(tx, kind, name)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return invalid(field, "%s %q does not exist (apply it first, or in the same manifest)", kind, name)
		case err != nil:
			return err
		}
		if _, ok := st.Sizes[file]; file != "" && !ok {
			return invalid(field, "%s %q has no file %q (it has %s)", kind, name, file, strings.Join(slices.Sorted(maps.Keys(st.Sizes)), ", "))
		}
		hashes[kind+"/"+name] = st.Version
		return nil
	}
	for _, vn := range slices.Sorted(maps.Keys(spec.Volumes)) {
		v := spec.Volumes[vn]
		if v == nil || (v.Type != configs.VolumeConfig && v.Type != configs.VolumeSecret) {
			continue
		}
		if err := look(fmt.Sprintf("app.%s.volume.%s.name", app, vn), v.Type, v.Name, ""); err != nil {
			return err
		}
	}
	for _, cn := range slices.Sorted(maps.Keys(spec.Containers)) {
		c := spec.Containers[cn]
		if c == nil {
			continue
		}
		for _, k := range slices.Sorted(maps.Keys(c.EnvFrom)) {
			ref, err := configs.ParseEnvRef(c.EnvFrom[k])
			if err != nil {
				return invalid(fmt.Sprintf("app.%s.container.%s.env_from.%s", app, cn, k), "%v", err)
			}
			if err := look(fmt.Sprintf("app.%s.container.%s.env_from.%s", app, cn, k), ref.Kind, ref.Name, ref.File); err != nil {
				return err
			}
		}
	}
	spec.ContentHashes = nil
	if len(hashes) > 0 {
		spec.ContentHashes = hashes
	}
	return nil
}

// rollUsers writes version as the content hash of ref ("config/NAME" or
// "secret/NAME") into every app that uses it, so that they roll.
func rollUsers(tx *store.Tx, ref, version string) error {
	var apps []*api.App
	if err := tx.List(api.KindApp, &apps); err != nil {
		return err
	}
	for _, a := range apps {
		if !slices.Contains(a.Spec.FileRefs(), ref) || a.Spec.ContentHashes[ref] == version {
			continue
		}
		h := maps.Clone(a.Spec.ContentHashes)
		if h == nil {
			h = map[string]string{}
		}
		h[ref] = version
		a.Spec.ContentHashes = h
		if err := tx.Put(api.KindApp, a); err != nil {
			return err
		}
		if err := tx.RecordEvent(api.KindApp+"/"+a.Name, api.EventNormal, "ContentChanged",
			ref+" changed: the app rolls to its new version", eventSource); err != nil {
			return err
		}
	}
	return nil
}

// usersOf names the apps that use ref.
func usersOf(tx *store.Tx, ref string) ([]string, error) {
	var apps []*api.App
	if err := tx.List(api.KindApp, &apps); err != nil {
		return nil, err
	}
	var out []string
	for _, a := range apps {
		if slices.Contains(a.Spec.FileRefs(), ref) {
			out = append(out, a.Name)
		}
	}
	return out, nil
}

// writeConfig writes one config in tx and rolls the apps that use it.
func writeConfig(tx *store.Tx, name string, spec *configs.FilesSpec, rev int64, out *api.Config) (string, error) {
	next := api.Config{Meta: api.Meta{Name: name, Revision: rev}, Spec: *spec,
		Status: api.FilesStatus{Version: spec.ContentHash(), Sizes: api.SizesOf(spec)}}
	var old api.Config
	err := tx.Get(api.KindConfig, name, &old)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if rev != 0 {
			return "", err
		}
		*out = next
		return api.ActionCreated, tx.Create(api.KindConfig, out)
	case err != nil:
		return "", err
	case rev == 0 && old.Status.Version == next.Status.Version:
		*out = old
		return api.ActionUnchanged, nil
	}
	next.Created = old.Created
	if rev == 0 {
		next.Revision = old.Revision
	}
	*out = next
	if err := tx.Put(api.KindConfig, out); err != nil {
		return "", err
	}
	return api.ActionConfigured, rollUsers(tx, configs.KindConfig+"/"+name, next.Status.Version)
}

// writeSecret seals and writes one secret in tx and rolls the apps that use
// it. out is the stored object without its sealed files.
func (s *Server) writeSecret(tx *store.Tx, name string, spec *configs.FilesSpec, rev int64, out *api.Secret) (string, error) {
	plain, err := json.Marshal(spec.Files)
	if err != nil {
		return "", err
	}
	var old api.Secret
	err = tx.Get(api.KindSecret, name, &old)
	exists := err == nil
	switch {
	case errors.Is(err, store.ErrNotFound):
		if rev != 0 {
			return "", err
		}
	case err != nil:
		return "", err
	case rev == 0:
		if prev, keyID, err := s.keys.open(name, old.Sealed); err == nil && keyID == s.keys.active && string(prev) == string(plain) {
			*out = redact(old)
			return api.ActionUnchanged, nil
		}
	}
	next := api.Secret{Meta: api.Meta{Name: name, Revision: rev},
		Status: api.FilesStatus{Version: randomVersion(), Sizes: api.SizesOf(spec)},
		Sealed: s.keys.seal(name, plain)}
	if exists {
		next.Created = old.Created
		if rev == 0 {
			next.Revision = old.Revision
		}
		if prev, _, err := s.keys.open(name, old.Sealed); err == nil && string(prev) == string(plain) {
			next.Status.Version = old.Status.Version // re-sealed only: no rollout
		}
	}
	if !exists {
		err = tx.Create(api.KindSecret, &next)
	} else {
		err = tx.Put(api.KindSecret, &next)
	}
	if err != nil {
		return "", err
	}
	*out = redact(next)
	if !exists {
		return api.ActionCreated, nil
	}
	return api.ActionConfigured, rollUsers(tx, configs.KindSecret+"/"+name, next.Status.Version)
}

// randomVersion is a secret's version: random, so that it tells nothing
// about the content.
func randomVersion() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// redact is a secret as the API shows it: names and sizes only.
func redact(s api.Secret) api.Secret {
	s.Sealed = nil
	s.Spec = configs.FilesSpec{}
	return s
}

// resealSecrets re-seals, at start, every secret sealed with another key
// than the active one (key rotation, see secretkeys.go). A secret that no
// key opens is logged and left as it is.
func (s *Server) resealSecrets() error {
	_, err := s.st.Update(func(tx *store.Tx) error {
		var list []*api.Secret
		if err := tx.List(api.KindSecret, &list); err != nil {
			return err
		}
		for _, sec := range list {
			plain, keyID, err := s.keys.open(sec.Name, sec.Sealed)
			if err != nil {
				s.log.Error("secret cannot be opened with the secret keys", "secret", sec.Name, "err", err)
				continue
			}
			if keyID == s.keys.active {
				continue
			}
			sec.Sealed = s.keys.seal(sec.Name, plain)
			if err := tx.Put(api.KindSecret, sec); err != nil {
				return err
			}
			s.log.Info("secret re-sealed with the active key", "secret", sec.Name, "key", s.keys.active, "was", keyID)
		}
		return nil
	})
	return err
}

func (s *Server) listConfigs(w http.ResponseWriter, r *http.Request) {
	list[api.Config](s, w, r, api.KindConfig, nil)
}

func (s *Server) getConfig(w http.ResponseWriter, r *http.Request) {
	get[api.Config](s, w, r, api.KindConfig)
}

// putConfig creates or replaces a config, and rolls the apps that use it.
func (s *Server) putConfig(w http.ResponseWriter, r *http.Request) {
	var c api.Config
	if err := s.decodeNamed(w, r, &c); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.validateFiles(configs.KindConfig, c.Name, &c.Spec); err != nil {
		s.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	var out api.Config
	_, err := s.st.Update(func(tx *store.Tx) error {
		action, err := writeConfig(tx, c.Name, &c.Spec, c.Revision, &out)
		if action == api.ActionCreated {
			status = http.StatusCreated
		}
		return err
	})
	s.answer(w, r, err, status, &out)
}

// listSecrets lists the secrets, redacted. It does not watch: a watch
// streams stored objects as they are.
func (s *Server) listSecrets(w http.ResponseWriter, r *http.Request) {
	if watch, _ := boolParam(r, "watch"); watch {
		s.writeError(w, r, invalid("watch", "secrets cannot be watched"))
		return
	}
	var items []*api.Secret
	rev, err := s.st.List(api.KindSecret, &items)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	for i, it := range items {
		red := redact(*it)
		items[i] = &red
	}
	writeJSON(w, http.StatusOK, api.List[*api.Secret]{Revision: rev, Items: items})
}

// getSecret answers one secret, redacted.
func (s *Server) getSecret(w http.ResponseWriter, r *http.Request) {
	var sec api.Secret
	if err := s.st.Get(api.KindSecret, r.PathValue("name"), &sec); err != nil {
		s.writeError(w, r, err)
		return
	}
	red := redact(sec)
	writeJSON(w, http.StatusOK, &red)
}

// putSecret creates or replaces a secret (sealed before it is stored), and
// rolls the apps that use it. The answer is redacted.
func (s *Server) putSecret(w http.ResponseWriter, r *http.Request) {
	var sec api.Secret
	if err := s.decodeNamed(w, r, &sec); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.validateFiles(configs.KindSecret, sec.Name, &sec.Spec); err != nil {
		s.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	var out api.Secret
	_, err := s.st.Update(func(tx *store.Tx) error {
		action, err := s.writeSecret(tx, sec.Name, &sec.Spec, sec.Revision, &out)
		if action == api.ActionCreated {
			status = http.StatusCreated
		}
		return err
	})
	s.answer(w, r, err, status, &out)
}

// deleteFiles deletes a config or secret that no app uses (409 naming the
// apps otherwise). The answer never carries a secret's files.
func (s *Server) deleteFiles(w http.ResponseWriter, r *http.Request, kind string) {
	rev, err := revisionParam(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	name := r.PathValue("name")
	ref := configs.KindConfig + "/" + name
	if kind == api.KindSecret {
		ref = configs.KindSecret + "/" + name
	}
	var resp api.DeleteResponse
	_, err = s.st.Update(func(tx *store.Tx) error {
		var obj any
		if kind == api.KindSecret {
			var sec api.Secret
			if err := tx.Get(kind, name, &sec); err != nil {
				return err
			}
			red := redact(sec)
			obj = &red
		} else {
			var c api.Config
			if err := tx.Get(kind, name, &c); err != nil {
				return err
			}
			obj = &c
		}
		users, err := usersOf(tx, ref)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return conflict("%s is used by app %s: change or delete the app first", ref, strings.Join(users, ", "))
		}
		if err := tx.Delete(kind, name, rev); err != nil {
			return err
		}
		resp.Object, err = json.Marshal(obj)
		return err
	})
	s.answer(w, r, err, http.StatusOK, &resp)
}

func (s *Server) deleteConfig(w http.ResponseWriter, r *http.Request) {
	s.deleteFiles(w, r, api.KindConfig)
}
func (s *Server) deleteSecret(w http.ResponseWriter, r *http.Request) {
	s.deleteFiles(w, r, api.KindSecret)
}

// nodeSecret gives node {name} the files of secret {secret} in clear, if a
// pod bound to that node uses it: a node gets only the secrets its own pods
// need. (authz lets only the node itself call it; the check of the pods is
// here, for every caller.)
func (s *Server) nodeSecret(w http.ResponseWriter, r *http.Request) {
	node, name := r.PathValue("name"), r.PathValue("secret")
	var pods []*api.Pod
	if _, err := s.st.List(api.KindPod, &pods); err != nil {
		s.writeError(w, r, err)
		return
	}
	ref := configs.KindSecret + "/" + name
	used := false
	for _, p := range pods {
		if p.Spec.Node == node && slices.Contains(podFileRefs(p), ref) {
			used = true
			break
		}
	}
	if !used {
		s.writeError(w, r, forbidden("%s may only fetch the secrets of pods bound to it (no pod on %s uses secret %s)", pki.NodeCN(node), node, name))
		return
	}
	var sec api.Secret
	if err := s.st.Get(api.KindSecret, name, &sec); err != nil {
		s.writeError(w, r, err)
		return
	}
	plain, _, err := s.keys.open(name, sec.Sealed)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("secret %s: %w", name, err))
		return
	}
	out := redact(sec)
	if err := json.Unmarshal(plain, &out.Spec.Files); err != nil {
		s.writeError(w, r, fmt.Errorf("secret %s: %w", name, err))
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, &out)
}

// podFileRefs lists the configs and secrets pod p uses.
func podFileRefs(p *api.Pod) []string {
	a := configs.AppSpec{Containers: p.Spec.Containers, Volumes: p.Spec.Volumes}
	return a.FileRefs()
}

// validateFiles checks a config or secret body.
func (s *Server) validateFiles(kind, name string, f *configs.FilesSpec) error {
	return s.withLimits(configs.ValidateFiles(kind, name, f), nil, nil)
}
