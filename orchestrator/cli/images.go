package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/containers"
	imgstore "github.com/skiff-edge/skiff/containers/images" // cli has a func images
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

// ErrImageInUse is returned by ImageRemove for an image that a container
// or a live pod of this node runs.
var ErrImageInUse = errors.New("image in use")

// Images works on one node's image store directly (`skiff images`): images
// are per node, and the store is a directory, so these commands run on the
// node, as root, and need no server. They may run beside the node's agent:
// the store serialises them with it.
type Images struct {
	// DataDir is the node's data directory (data_dir); the store is inside.
	// It must exist.
	DataDir string
	// StateDir is the node's container runtime state directory
	// (<run_dir>/containers): ImageRemove reads which images the node's
	// containers use there. It is only read; it need not exist. Default
	// the one of the default run_dir.
	StateDir string
	// Insecure are the registries reached over plain HTTP besides loopback
	// ones (insecure_registries).
	Insecure []string
	// Node is this node's name: ImageRemove looks for its live pods.
	Node string
	// API, if not nil, is asked which pods run on Node (it also knows pods
	// whose containers have not started yet); when it cannot be reached,
	// ImageRemove goes by the node's containers alone.
	API *client.Client
	// Out receives tables and results, Err progress.
	Out, Err io.Writer
	// TTY says that Err is a terminal: progress is one line, updated.
	TTY bool
}

// config is the containers config of the node's image store.
func (o *Images) config() containers.Config {
	state := o.StateDir
	if state == "" {
		state = filepath.Join(configs.DefaultRunDir, "containers")
	}
	return containers.Config{
		Root:               o.DataDir,
		StateDir:           state,
		InsecureRegistries: o.Insecure,
		Logger:             slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// open opens the image store of DataDir alone: no container runtime, no
// import of dropped archives (the node's agent owns both).
func (o *Images) open() (*imgstore.Store, error) {
	fi, err := os.Stat(o.DataDir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("data dir %s does not exist (has skiff run on this node? see --data-dir)", o.DataDir)
		}
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("data dir %s is not a directory", o.DataDir)
	}
	if err := checkWritable(o.DataDir); err != nil {
		return nil, err
	}
	return containers.OpenImageStore(o.config())
}

// checkWritable fails early, with a hint, when the store cannot be written
// (skiff images run as a user other than root).
func checkWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".skiff-images-")
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("cannot write to %s: run skiff images as root", dir)
		}
		return fmt.Errorf("data dir: %w", err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// Pull pulls ref into the store, showing progress on Err.
func (o *Images) Pull(ctx context.Context, ref string) error {
	if _, err := imgstore.NormalizeRef(ref); err != nil {
		return oneLine(err)
	}
	st, err := o.open()
	if err != nil {
		return err
	}
	p := newProgress(o.Err, o.TTY)
	img, err := st.Pull(ctx, ref, p.report)
	p.finish()
	if err != nil {
		return oneLine(err)
	}
	_, err = fmt.Fprintf(o.Out, "pulled %s (%s, %s)\n", Escape(ref), shortDigest(imageDigest(img)), FormatBytes(img.Size))
	return err
}

// Import loads every image of an archive (OCI layout or docker save).
func (o *Images) Import(ctx context.Context, path string) error {
	if _, err := os.Stat(path); err != nil {
		return oneLine(fmt.Errorf("import: %w", err))
	}
	st, err := o.open()
	if err != nil {
		return err
	}
	p := newProgress(o.Err, o.TTY)
	imgs, err := st.Import(ctx, path, p.report)
	p.finish()
	if err != nil {
		return oneLine(err)
	}
	for _, img := range imgs {
		name := "<none>"
		if len(img.Refs) > 0 {
			name = strings.Join(img.Refs, ", ")
		}
		if _, err := fmt.Fprintf(o.Out, "imported %s (%s, %s)\n", Escape(name), shortDigest(imageDigest(img)), FormatBytes(img.Size)); err != nil {
			return err
		}
	}
	return nil
}

// List writes the store's images as a table: one row per reference.
func (o *Images) List(ctx context.Context, now time.Time) error {
	st, err := o.open()
	if err != nil {
		return err
	}
	imgs, err := st.List()
	if err != nil {
		return err
	}
	var rows [][]string
	for _, img := range imgs {
		refs := img.Refs
		if len(refs) == 0 {
			refs = []string{"<none>"}
		}
		for _, r := range refs {
			rows = append(rows, []string{r, shortDigest(imageDigest(img)), FormatBytes(img.Size), FormatAge(now.Sub(img.Created)) + " ago"})
		}
	}
	return WriteTable(o.Out, []string{"REPOSITORY:TAG", "DIGEST", "SIZE", "CREATED"}, rows)
}

// Remove drops ref from the store. It refuses an image that a container
// of this node uses (from the runtime's records), or that a live pod of
// this node runs when the API says so; force skips both checks. The
// unpacked layers stay until the image store's GC runs.
func (o *Images) Remove(ctx context.Context, ref string, force bool) error {
	if !strings.HasPrefix(ref, "sha256:") {
		if _, err := imgstore.NormalizeRef(ref); err != nil {
			return oneLine(err)
		}
	}
	st, err := o.open()
	if err != nil {
		return err
	}
	img, err := st.Get(ref)
	if err != nil {
		return oneLine(err)
	}
	if !force {
		used, err := containers.ImagesInUse(o.config())
		if err != nil {
			return oneLine(fmt.Errorf("image %s: cannot tell whether a container uses it (use --force to remove it anyway): %w", ref, err))
		}
		if cs := used[img.ID]; len(cs) > 0 {
			return fmt.Errorf("image %s: %w by container %s on node %s (use --force to remove it anyway)", ref, ErrImageInUse, strings.Join(cs, ", "), o.Node)
		}
		if pod := o.podUsing(ctx, st, img.ID); pod != "" {
			return fmt.Errorf("image %s: %w by pod %s on node %s (use --force to remove it anyway)", ref, ErrImageInUse, pod, o.Node)
		}
	}
	if err := st.Remove(ref); err != nil {
		return oneLine(err)
	}
	_, err = fmt.Fprintf(o.Out, "removed %s\n", Escape(ref))
	return err
}

// podUsing returns a live pod of this node whose containers run the image
// with id, or "" if there is none or the API cannot tell.
func (o *Images) podUsing(ctx context.Context, st *imgstore.Store, id string) string {
	if o.API == nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	pods, err := o.API.ListPods(ctx, "", o.Node)
	if err != nil {
		return ""
	}
	for _, p := range pods.Items {
		if p.Status.Phase == api.PodSucceeded || p.Status.Phase == api.PodFailed {
			continue
		}
		for _, c := range p.Spec.Containers {
			if c == nil {
				continue
			}
			if img, err := st.Get(c.Image); err == nil && img.ID == id {
				return p.Name
			}
		}
	}
	return ""
}

func imageDigest(img imgstore.Image) string {
	if img.ManifestDigest != "" {
		return img.ManifestDigest
	}
	return img.ID
}

// shortDigest returns the first 12 hex digits of a digest.
func shortDigest(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		d = d[:12]
	}
	return d
}

// lineError is an error printed on one line: registries and tar readers
// may put newlines in their messages.
type lineError struct{ err error }

func (e *lineError) Error() string {
	return strings.Join(strings.Fields(strings.ReplaceAll(e.err.Error(), "\n", "; ")), " ")
}
func (e *lineError) Unwrap() error { return e.err }

func oneLine(err error) error {
	if err == nil || !strings.Contains(err.Error(), "\n") {
		return err
	}
	return &lineError{err}
}

// progress shows a pull or import: on a terminal, one line rewritten in
// place (layer, bytes done / total); otherwise a plain line per finished
// layer.
type progress struct {
	w       io.Writer
	tty     bool
	drawn   bool
	printed map[string]bool
}

func newProgress(w io.Writer, tty bool) *progress {
	return &progress{w: w, tty: tty, printed: map[string]bool{}}
}

func (p *progress) report(ev imgstore.Progress) {
	if p.w == nil {
		return
	}
	layer := shortDigest(ev.Layer)
	var line string
	switch ev.Phase {
	case "resolve":
		line = "resolving " + ev.Ref
	case "exists":
		line = "layer " + layer + ": already present"
	case "download":
		if ev.Total > 0 {
			line = fmt.Sprintf("layer %s: %s / %s", layer, FormatBytes(ev.Done), FormatBytes(ev.Total))
		} else {
			line = fmt.Sprintf("layer %s: %s", layer, FormatBytes(ev.Done))
		}
		// Plain output: one line per layer, when it is complete.
		if !p.tty && (ev.Total == 0 || ev.Done < ev.Total) {
			return
		}
	default:
		return // "done": the caller prints the result
	}
	line = Escape(line) // a registry's or an archive's names and digests
	if p.tty {
		fmt.Fprintf(p.w, "\r\x1b[K%s", line)
		p.drawn = true
		return
	}
	key := ev.Phase + ev.Layer
	if ev.Layer != "" && p.printed[key] {
		return
	}
	p.printed[key] = true
	fmt.Fprintln(p.w, line)
}

// finish ends the progress line on a terminal.
func (p *progress) finish() {
	if p.tty && p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}
