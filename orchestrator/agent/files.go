package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/containers"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

// fileAPI is how a pod gets the configs and secrets it uses. Satisfied by
// *client.Client: configs any node may read, secrets only the node that
// runs a pod using them, through its own route.
type fileAPI interface {
	GetConfig(ctx context.Context, name string) (*api.Config, error)
	NodeSecret(ctx context.Context, node, name string) (*api.Secret, error)
}

var _ fileAPI = (*client.Client)(nil)

// volumeOverhead is room above a config or secret's files in its tmpfs.
const volumeOverhead = 64 << 10

// podFiles holds the configs and secrets fetched for one pod start. The
// files are only ever in memory: in the pod's tmpfs volumes and in the
// containers' environment, never in the agent's cache file.
type podFiles struct {
	sets map[string]map[string]string // "config/NAME" | "secret/NAME" -> files
}

// fetchFiles fetches every config and secret pod p uses.
func (ps *pods) fetchFiles(ctx context.Context, p *api.Pod) (*podFiles, error) {
	a := configs.AppSpec{Containers: p.Spec.Containers, Volumes: p.Spec.Volumes}
	refs := a.FileRefs()
	pf := &podFiles{sets: map[string]map[string]string{}}
	if len(refs) == 0 {
		return pf, nil
	}
	if ps.files == nil {
		return nil, errors.New("this node cannot fetch configs and secrets")
	}
	for _, ref := range refs {
		kind, name := configs.KindConfig, ref[len(configs.KindConfig)+1:]
		if ref[:len(configs.KindSecret)] == configs.KindSecret {
			kind, name = configs.KindSecret, ref[len(configs.KindSecret)+1:]
		}
		var files map[string]string
		if kind == configs.KindConfig {
			c, err := ps.files.GetConfig(ctx, name)
			if err != nil {
				return nil, fmt.Errorf("config %s: %w", name, err)
			}
			files = c.Spec.Files
		} else {
			s, err := ps.files.NodeSecret(ctx, ps.node, name)
			if err != nil {
				return nil, fmt.Errorf("secret %s: %w", name, err)
			}
			files = s.Spec.Files
		}
		pf.sets[ref] = files
	}
	return pf, nil
}

// volume is the runtime volume of a config or secret volume: a read-only
// tmpfs holding its files.
func (pf *podFiles) volume(v *configs.VolumeSpec) containers.Volume {
	files := pf.sets[v.Type+"/"+v.Name]
	out := containers.Volume{Type: containers.VolumeMemory, ReadOnly: true, Files: map[string][]byte{}}
	size := 0
	for fn, c := range files {
		out.Files[fn] = []byte(c)
		size += len(c)
	}
	out.Size = int64(size + volumeOverhead)
	return out
}

// env returns c's env with its env_from variables added.
func (pf *podFiles) env(c *configs.ContainerSpec) (map[string]string, error) {
	if len(c.EnvFrom) == 0 {
		return c.Env, nil
	}
	env := maps.Clone(c.Env)
	if env == nil {
		env = map[string]string{}
	}
	for k, ref := range c.EnvFrom {
		r, err := configs.ParseEnvRef(ref)
		if err != nil {
			return nil, fmt.Errorf("env_from %s: %w", k, err)
		}
		v, ok := pf.sets[r.Kind+"/"+r.Name][r.File]
		if !ok {
			return nil, fmt.Errorf("env_from %s: %s %s has no file %s", k, r.Kind, r.Name, r.File)
		}
		env[k] = v
	}
	return env, nil
}
