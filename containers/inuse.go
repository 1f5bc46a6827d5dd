package containers

// The runtime's side of the image store (package images): the store it
// opens, and what its containers use of it.

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/skiff-edge/skiff/containers/images"
)

// OpenImageStore opens the image store of cfg.Root on its own: no
// libcontainer state, no adoption of containers, no import of the archives
// dropped into Root/images (images.Store.ImportDir does that when asked).
// It never writes to cfg.StateDir; its GC reads the runtime's container
// records there (see ImagesInUse) and spares the layers of images they
// use. It suits a command that runs beside a node's agent.
func OpenImageStore(cfg Config) (*images.Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("containers config: %w", err)
	}
	return newImageStore(cfg, cfg.Logger.With("component", "images"), func() (map[string]bool, error) {
		_, layers, err := containersInUse(cfg.StateDir)
		return layers, err
	})
}

// newImageStore opens the image store of a validated cfg; inUse lists the
// layers under containers, which its GC spares.
func newImageStore(cfg Config, log *slog.Logger, inUse func() (map[string]bool, error)) (*images.Store, error) {
	return images.Open(images.Config{
		Root:               cfg.Root,
		InsecureRegistries: cfg.InsecureRegistries,
		LayerGCGrace:       cfg.LayerGCGrace,
		Limits:             cfg.ImageLimits,
		InUse:              inUse,
		Logger:             log,
	})
}

// ImagesInUse returns the images that containers of the runtime with
// cfg.StateDir use, by image ID, each with its containers ("pod/name",
// sorted). It reads the runtime's records, so it needs neither the
// runtime's process nor the API, and writes nothing. A container counts
// from its start until its pod is removed, whether it runs, waits for a
// restart or has exited: its root filesystem stands on the image's layers
// all that time. A state directory that does not exist has no containers.
// Records that cannot be read are reported in the error, next to what
// could be read.
func ImagesInUse(cfg Config) (map[string][]string, error) {
	if cfg.StateDir == "" || !filepath.IsAbs(cfg.StateDir) {
		return nil, fmt.Errorf("state dir %q: must be an absolute path", cfg.StateDir)
	}
	imgs, _, err := containersInUse(cfg.StateDir)
	return imgs, err
}

// containersInUse reads the container records of a state directory and
// returns the images they use (ID → containers) and their layers (hex diff
// IDs).
func containersInUse(stateDir string) (map[string][]string, map[string]bool, error) {
	imgs, layers := map[string][]string{}, map[string]bool{}
	recs, err := filepath.Glob(filepath.Join(stateDir, "containers", "*", "record.json"))
	if err != nil {
		return nil, nil, err
	}
	var errs []error
	for _, p := range recs {
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue // its pod was removed meanwhile
		}
		var rec record
		if err == nil {
			err = json.Unmarshal(b, &rec)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("container record %s: %w", p, err))
			continue
		}
		if rec.ImageID != "" {
			imgs[rec.ImageID] = append(imgs[rec.ImageID], rec.Pod+"/"+rec.Config.Name)
		}
		for _, l := range rec.Layers {
			layers[strings.TrimPrefix(l, "sha256:")] = true
		}
	}
	for _, c := range imgs {
		slices.Sort(c)
	}
	return imgs, layers, errors.Join(errs...)
}
