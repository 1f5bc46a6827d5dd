package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/containers"
	"github.com/skiff-edge/skiff/netlb"
)

// Cleanup removes everything an agent with this node config made on the
// node, for `skiff agent --cleanup`: every container, shim, mount and
// cgroup (containers.Cleanup), every link, route, rule, netns and IP
// (netlb's Cleanup) and every load-balancer address (VIP) it announced
// (netlb.CleanupVIPs). Images, the store and the token stay. It goes on past
// failures and returns them all; running it again is harmless. No agent
// may run on these directories.
func Cleanup(n configs.NodeConfig, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	var errs []error
	if err := containers.Cleanup(RuntimeConfig(n, log)); err != nil {
		errs = append(errs, fmt.Errorf("containers: %w", err))
	}
	ncfg, err := NetConfig(n, nil, log)
	if err == nil {
		var nw *netlb.Network
		if nw, err = netlb.New(ncfg); err == nil {
			err = nw.Cleanup()
		}
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("network: %w", err))
	}
	if err := netlb.CleanupVIPs(); err != nil {
		errs = append(errs, fmt.Errorf("load-balancer addresses: %w", err))
	}
	// The run dir goes if nothing else (an API socket) is left in it.
	for _, d := range []string{filepath.Join(n.RunDir, "netns"), n.RunDir} {
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.Debug("run dir kept", "dir", d, "err", err)
		}
	}
	return errors.Join(errs...)
}
