package configs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
)

// ParseManifest decodes the deploy manifest data read from filename, applies
// the defaults and validates it. On bad input (a syntax error too) the error
// is an ErrorList of every problem found, each with its file:line:column and
// field path, and the manifest is nil.
func ParseManifest(filename string, data []byte) (*Manifest, error) {
	f, list := parseFile(filename, data)
	if f != nil {
		var e errs
		crossCheck(&e, f.m)
		list = append(list, f.locate(e.list)...)
		list.sortByPosition()
	}
	if len(list) > 0 {
		return nil, list
	}
	return f.m, nil
}

// parsedFile is one decoded manifest file and where its keys are.
type parsedFile struct {
	name string
	ix   posIndex
	m    *Manifest
}

// locate gives each error of l the file's name and the position of its
// field.
func (f *parsedFile) locate(l ErrorList) ErrorList {
	for _, e := range l {
		e.File = f.name
		if p, ok := f.ix.lookup(e.path, e.atKey); ok {
			e.Line, e.Col = p.line, p.col
		}
	}
	return l
}

// parseFile decodes, defaults and validates one file, without the checks
// across objects (crossCheck). f is nil on a syntax error.
func parseFile(name string, data []byte) (*parsedFile, ErrorList) {
	tree, perr := parseTOML(name, data)
	if perr != nil {
		return nil, ErrorList{perr}
	}
	f := &parsedFile{name: name, ix: indexPositions(data), m: &Manifest{}}
	var e errs
	d := decoder{errs: &e}
	d.decodeStruct(nil, tree, reflect.ValueOf(f.m).Elem())
	decodeErrs := e.list
	f.m.SetDefaults()
	var r errs
	resolveFromFile(&r, f.m, filepath.Dir(name))
	decodeErrs = append(decodeErrs, r.list...)

	var v errs
	validateObjects(&v, f.m)
	list := append(ErrorList{}, decodeErrs...)
	list = append(list, dropRepeats(v.list, decodeErrs)...)
	list = f.locate(list)
	list.sortByPosition()
	return f, list
}

// dropRepeats returns the validation errors that are not at or under the
// field of a decode error: a value that failed to decode was left zero, and
// what validation says about that zero would only repeat the decode error.
func dropRepeats(validation, decode ErrorList) ErrorList {
	failed := make(map[string]bool, len(decode))
	for _, de := range decode {
		failed[strings.Join(de.path, pathSep)] = true
	}
	var out ErrorList
next:
	for _, ve := range validation {
		for n := 1; n <= len(ve.path); n++ {
			if failed[strings.Join(ve.path[:n], pathSep)] {
				continue next
			}
		}
		out = append(out, ve)
	}
	return out
}

// parseTOML parses data into a tree, or returns the syntax error with its
// position.
func parseTOML(name string, data []byte) (map[string]any, *FieldError) {
	var tree map[string]any
	err := toml.Unmarshal(data, &tree)
	if err == nil {
		return tree, nil
	}
	fe := &FieldError{File: name, Msg: "syntax error: " + err.Error(), err: err}
	var pe toml.ParseError
	if errors.As(err, &pe) {
		fe.Msg = "syntax error: " + strings.TrimSuffix(pe.Message, ".")
		fe.Line, fe.Col = pe.Position.Line, pe.Position.Col
		// The library counts columns in bytes, and may put an error at a
		// line's end on the next line; count from the byte offset, in
		// characters, as the rest of the errors do.
		if s := pe.Position.Start; s >= 0 && s <= len(data) {
			lineStart := bytes.LastIndexByte(data[:s], '\n') + 1
			fe.Line = bytes.Count(data[:s], []byte("\n")) + 1
			fe.Col = utf8.RuneCount(data[lineStart:s]) + 1
		}
	}
	return tree, fe
}

// LoadManifests reads deploy manifests from files and directories (a
// directory stands for its *.toml files, in name order) and merges them
// into one manifest. An app or service defined in two places is an error
// that names both. The error holds every problem of every file; nothing is
// returned unless all files are good. A directory without manifests gives
// an empty manifest.
func LoadManifests(paths ...string) (*Manifest, error) {
	var list ErrorList
	var files []string
	order := map[string]int{} // file -> place in the error list
	addFile := func(name string) {
		// A file named twice (itself and through its directory) is read
		// once.
		if _, dup := order[filepath.Clean(name)]; !dup {
			order[filepath.Clean(name)] = len(order) + 1
			files = append(files, filepath.Clean(name))
		}
	}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			order[p] = len(order) + 1
			list = append(list, &FieldError{File: p, Msg: ioMsg(err), err: err})
			continue
		}
		if !fi.IsDir() {
			addFile(p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			order[p] = len(order) + 1
			list = append(list, &FieldError{File: p, Msg: ioMsg(err), err: err})
			continue
		}
		for _, de := range entries {
			if !de.IsDir() && strings.HasSuffix(de.Name(), ".toml") && !strings.HasPrefix(de.Name(), ".") {
				addFile(filepath.Join(p, de.Name()))
			}
		}
	}

	merged := &Manifest{}
	origin := map[string]*parsedFile{} // "app.NAME" / "service.NAME" -> file
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			list = append(list, &FieldError{File: name, Msg: ioMsg(err), err: err})
			continue
		}
		f, errs := parseFile(name, data)
		list = append(list, errs...)
		if f == nil {
			continue
		}
		for _, n := range sortedKeys(f.m.Apps) {
			if dup := mergeObject(f, origin, "app", n); dup != nil {
				list = append(list, dup)
				continue
			}
			if merged.Apps == nil {
				merged.Apps = map[string]*AppSpec{}
			}
			merged.Apps[n] = f.m.Apps[n]
		}
		for _, n := range sortedKeys(f.m.Services) {
			if dup := mergeObject(f, origin, "service", n); dup != nil {
				list = append(list, dup)
				continue
			}
			if merged.Services == nil {
				merged.Services = map[string]*ServiceSpec{}
			}
			merged.Services[n] = f.m.Services[n]
		}
		for kind, sets := range map[string]map[string]*FilesSpec{KindConfig: f.m.Configs, KindSecret: f.m.Secrets} {
			for _, n := range sortedKeys(sets) {
				if dup := mergeObject(f, origin, kind, n); dup != nil {
					list = append(list, dup)
					continue
				}
				dst := &merged.Configs
				if kind == KindSecret {
					dst = &merged.Secrets
				}
				if *dst == nil {
					*dst = map[string]*FilesSpec{}
				}
				(*dst)[n] = sets[n]
			}
		}
	}

	var e errs
	crossCheck(&e, merged)
	for _, fe := range e.list {
		if f := origin[path(fe.path[:2]).String()]; f != nil {
			f.locate(ErrorList{fe})
		}
		list = append(list, fe)
	}
	if len(list) > 0 {
		list.sortByPosition()
		slices.SortStableFunc(list, func(a, b *FieldError) int { return order[a.File] - order[b.File] })
		return nil, list
	}
	return merged, nil
}

// mergeObject records that f defines kind.name, or returns the error if an
// earlier file did.
func mergeObject(f *parsedFile, origin map[string]*parsedFile, kind, name string) *FieldError {
	key := path{kind, name}
	if first, ok := origin[key.String()]; ok {
		where := first.name
		if p, ok := first.ix.lookup(key, true); ok {
			where = fmt.Sprintf("%s:%d:%d", first.name, p.line, p.col)
		}
		return f.locate(ErrorList{{Field: key.String(), Msg: fmt.Sprintf("%s %q is defined twice (first in %s)", kind, name, where), path: key, atKey: true}})[0]
	}
	origin[key.String()] = f
	return nil
}

// ioMsg is the message of an I/O error, without the path that the
// FieldError already carries.
func ioMsg(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Op + ": " + pe.Err.Error()
	}
	return err.Error()
}

// Validate checks every app and service of m, and the references between
// them (a service's target_port name against its app's ports, when the app
// is in m). Zero values of defaulted fields are accepted. The error is an
// ErrorList without positions; the server uses it on API bodies.
func (m *Manifest) Validate() error {
	if m == nil {
		return nil
	}
	var e errs
	validateObjects(&e, m)
	crossCheck(&e, m)
	return e.list.err()
}

// validateObjects checks each app and service on its own.
func validateObjects(e *errs, m *Manifest) {
	for _, n := range sortedKeys(m.Apps) {
		validateApp(e, n, m.Apps[n])
	}
	for _, n := range sortedKeys(m.Services) {
		validateService(e, n, m.Services[n])
	}
	for _, n := range sortedKeys(m.Configs) {
		validateFiles(e, path{KindConfig, n}, n, m.Configs[n])
	}
	for _, n := range sortedKeys(m.Secrets) {
		validateFiles(e, path{KindSecret, n}, n, m.Secrets[n])
	}
}

// crossCheck checks what involves more than one object of m.
func crossCheck(e *errs, m *Manifest) {
	checkFileRefs(e, m)
	nodePorts := map[int]string{}
	clusterIPs := map[string]string{}
	for _, n := range sortedKeys(m.Services) {
		s := m.Services[n]
		if s == nil {
			continue
		}
		p := path{"service", n}
		if a := m.Apps[s.App]; a != nil && s.TargetPort.Name != "" && validPortName(s.TargetPort.Name) {
			if _, ok := a.ResolvePort(s.TargetPort); !ok {
				var names []string
				for _, c := range a.Containers {
					if c != nil {
						names = append(names, sortedKeys(c.Ports)...)
					}
				}
				slices.Sort(names)
				e.add(p.with("target_port"), "%q is not a port of app %q%s", s.TargetPort.Name, s.App, hint(names))
			}
		}
		if s.NodePort != 0 {
			if other, dup := nodePorts[s.NodePort]; dup {
				e.add(p.with("node_port"), "%d is also the node port of service %q", s.NodePort, other)
			} else {
				nodePorts[s.NodePort] = n
			}
		}
		if s.ClusterIP != "" {
			if other, dup := clusterIPs[s.ClusterIP]; dup {
				e.add(p.with("cluster_ip"), "%s is also the cluster IP of service %q", s.ClusterIP, other)
			} else {
				clusterIPs[s.ClusterIP] = n
			}
		}
	}
}

// checkFileRefs checks that the configs and secrets an app of m uses are
// in m, when m has any: a manifest without configs and secrets may use
// those stored already, which the server checks.
func checkFileRefs(e *errs, m *Manifest) {
	if len(m.Configs) == 0 && len(m.Secrets) == 0 {
		return
	}
	has := func(kind, name string) bool {
		if kind == KindSecret {
			return m.Secrets[name] != nil
		}
		return m.Configs[name] != nil
	}
	for _, an := range sortedKeys(m.Apps) {
		a := m.Apps[an]
		if a == nil {
			continue
		}
		for _, vn := range sortedKeys(a.Volumes) {
			v := a.Volumes[vn]
			if v != nil && (v.Type == VolumeConfig || v.Type == VolumeSecret) && ValidName(v.Name) && !has(v.Type, v.Name) {
				e.add(path{"app", an, "volume", vn, "name"}, "%s %q is not in the manifest", v.Type, v.Name)
			}
		}
		for _, cn := range sortedKeys(a.Containers) {
			c := a.Containers[cn]
			if c == nil {
				continue
			}
			for _, k := range sortedKeys(c.EnvFrom) {
				r, err := ParseEnvRef(c.EnvFrom[k])
				if err != nil {
					continue
				}
				p := path{"app", an, "container", cn, "env_from", k}
				switch {
				case !has(r.Kind, r.Name):
					e.add(p, "%s %q is not in the manifest", r.Kind, r.Name)
				case r.Kind == KindConfig && m.Configs[r.Name].Files != nil && !hasFile(m.Configs[r.Name], r.File),
					r.Kind == KindSecret && m.Secrets[r.Name].Files != nil && !hasFile(m.Secrets[r.Name], r.File):
					e.add(p, "%s %q has no file %q", r.Kind, r.Name, r.File)
				}
			}
		}
	}
}

func hasFile(f *FilesSpec, name string) bool { _, ok := f.Files[name]; return ok }
