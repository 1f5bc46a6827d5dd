package configs

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Config files and secrets: named sets of files that a manifest declares
// at the top level ([config.NAME], [secret.NAME]) and that apps mount as
// volumes (type = "config" | "secret", name = NAME) or read into
// environment variables (env_from).

// MaxFilesSize bounds the total size of the files of one config or secret:
// they travel in API bodies (1 MiB by default, JSON-escaped), live in the
// store and, for secrets, in every using node's memory.
const MaxFilesSize = 512 << 10

// MaxFiles bounds the number of files of one config or secret.
const MaxFiles = 64

// FilesSpec is a config or a secret: files by name.
type FilesSpec struct {
	// Files maps a file name (no '/') to its content.
	Files map[string]string `toml:"files" json:"files,omitempty"`
	// FromFile names a file on the machine that runs `skiff apply`,
	// relative to the manifest: it becomes one file of the same base name.
	// It is resolved when the manifest is read and never sent.
	FromFile string `toml:"from_file" json:"-"`
}

// Size is the total size in bytes of the files' contents.
func (f *FilesSpec) Size() int {
	n := 0
	for _, c := range f.Files {
		n += len(c)
	}
	return n
}

// ContentHash is a digest of the files (names and contents): 16 hex
// digits, stable across runs.
func (f *FilesSpec) ContentHash() string {
	b, _ := json.Marshal(f.Files) // sorted keys; a map of strings always marshals
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:16]
}

// Kinds of a file set, as env_from names them and the volume types do.
const (
	KindConfig = "config"
	KindSecret = "secret"
)

// fileNameRE is a file name inside a config or secret volume.
var fileNameRE = regexp.MustCompile(`^[A-Za-z0-9_][-A-Za-z0-9_.]*$`)

// validFileName reports whether s can name a file of a config or secret.
func validFileName(s string) bool { return len(s) <= 253 && fileNameRE.MatchString(s) }

// ValidateFiles checks a config or secret (kind is KindConfig or
// KindSecret) named name, as an API body: the error is an ErrorList
// without positions.
func ValidateFiles(kind, name string, f *FilesSpec) error {
	var e errs
	validateFiles(&e, path{kind, name}, name, f)
	return e.list.err()
}

func validateFiles(e *errs, p path, name string, f *FilesSpec) {
	if !ValidName(name) {
		e.addKey(p, "%s", nameMsg(name))
	}
	if f == nil {
		e.add(p, "is empty")
		return
	}
	if f.FromFile != "" {
		// Left only when the manifest was not read from a file (an API
		// body never carries it).
		e.add(p.with("from_file"), "cannot be resolved here (no manifest file)")
		return
	}
	if len(f.Files) == 0 {
		e.add(p, "has no files (set files = { NAME = \"content\" } or from_file)")
		return
	}
	if len(f.Files) > MaxFiles {
		e.add(p.with("files"), "has %d files, more than %d", len(f.Files), MaxFiles)
	}
	for _, fn := range sortedKeys(f.Files) {
		if !validFileName(fn) {
			e.addKey(p.with("files", fn), "%s is not a valid file name (letters, digits, '.', '-', '_'; no '/'; not starting with '.' or '-')", quoteShort(fn))
		}
		if !utf8.ValidString(f.Files[fn]) {
			e.add(p.with("files", fn), "is not valid UTF-8 text")
		}
	}
	if n := f.Size(); n > MaxFilesSize {
		e.add(p.with("files"), "holds %d bytes, more than the limit of %d (512 KiB)", n, MaxFilesSize)
	}
}

// resolveFromFile reads the from_file of every config and secret of m,
// relative to dir. Problems are added to e.
func resolveFromFile(e *errs, m *Manifest, dir string) {
	for kind, sets := range map[string]map[string]*FilesSpec{KindConfig: m.Configs, KindSecret: m.Secrets} {
		for _, n := range sortedKeys(sets) {
			f := sets[n]
			if f == nil || f.FromFile == "" {
				continue
			}
			p := path{kind, n, "from_file"}
			if len(f.Files) > 0 {
				e.add(p, "cannot be used together with files")
				continue
			}
			name := f.FromFile
			if !filepath.IsAbs(name) {
				name = filepath.Join(dir, name)
			}
			fi, err := os.Stat(name)
			switch {
			case err != nil:
				e.add(p, "%s: %s", quoteShort(f.FromFile), ioMsg(err))
				continue
			case !fi.Mode().IsRegular():
				e.add(p, "%s is not a regular file", quoteShort(f.FromFile))
				continue
			case fi.Size() > MaxFilesSize:
				e.add(p, "%s holds %d bytes, more than the limit of %d (512 KiB)", quoteShort(f.FromFile), fi.Size(), MaxFilesSize)
				continue
			}
			b, err := os.ReadFile(name)
			if err != nil {
				e.add(p, "%s: %s", quoteShort(f.FromFile), ioMsg(err))
				continue
			}
			f.Files = map[string]string{filepath.Base(name): string(b)}
			f.FromFile = ""
		}
	}
}

// EnvRef is a parsed env_from value: "config:NAME/FILE" or
// "secret:NAME/FILE".
type EnvRef struct {
	Kind, Name, File string
}

// ParseEnvRef parses an env_from value.
func ParseEnvRef(s string) (EnvRef, error) {
	kind, rest, ok := strings.Cut(s, ":")
	if !ok || (kind != KindConfig && kind != KindSecret) {
		return EnvRef{}, fmt.Errorf("%s is not a reference (use \"config:NAME/FILE\" or \"secret:NAME/FILE\")", quoteShort(s))
	}
	name, file, ok := strings.Cut(rest, "/")
	if !ok || !ValidName(name) || !validFileName(file) {
		return EnvRef{}, fmt.Errorf("%s is not a reference (use \"%s:NAME/FILE\", NAME a valid name, FILE a file of it)", quoteShort(s), kind)
	}
	return EnvRef{Kind: kind, Name: name, File: file}, nil
}

// FileRefs lists what the pod template of a uses from configs and secrets:
// "config/NAME" and "secret/NAME" keys, each once.
func (a *AppSpec) FileRefs() []string {
	set := map[string]bool{}
	for _, v := range a.Volumes {
		if v != nil && (v.Type == VolumeConfig || v.Type == VolumeSecret) && v.Name != "" {
			set[v.Type+"/"+v.Name] = true
		}
	}
	for _, c := range a.Containers {
		if c == nil {
			continue
		}
		for _, ref := range c.EnvFrom {
			if r, err := ParseEnvRef(ref); err == nil {
				set[r.Kind+"/"+r.Name] = true
			}
		}
	}
	return sortedKeys(set)
}
