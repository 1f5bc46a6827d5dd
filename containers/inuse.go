package containers

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

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
