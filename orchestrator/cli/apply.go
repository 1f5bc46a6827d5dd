package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

// singular maps an API kind to the word the CLI prints before a name
// ("app/web").
var singular = map[string]string{
	api.KindNode: "node", api.KindApp: "app", api.KindPod: "pod",
	api.KindService: "service", api.KindEndpoints: "endpoints", api.KindEvent: "event",
	api.KindConfig: "config", api.KindSecret: "secret",
}

// Ref formats an object reference as the CLI prints it: "app/web". The
// name goes through Escape: it may be the server's text.
func Ref(kind, name string) string {
	if s, ok := singular[kind]; ok {
		kind = s
	}
	return Escape(kind + "/" + name)
}

// Apply loads and validates the manifests at paths (files or directories)
// and sends them to the API in one apply. It prints one line per object,
// "app/web created|configured|unchanged", with " (dry run)" when dryRun.
// A manifest that does not validate is returned as a configs.ErrorList and
// nothing is sent.
func Apply(ctx context.Context, c *client.Client, w io.Writer, paths []string, dryRun bool) error {
	m, err := configs.LoadManifests(paths...)
	if err != nil {
		return err
	}
	if len(m.Apps) == 0 && len(m.Services) == 0 {
		return fmt.Errorf("no apps or services in %s", strings.Join(paths, ", "))
	}
	res, err := c.Apply(ctx, m, dryRun)
	if err != nil {
		return err
	}
	suffix := ""
	if dryRun {
		suffix = " (dry run)"
	}
	for _, o := range res.Results {
		if _, err := fmt.Fprintf(w, "%s %s%s\n", Ref(o.Kind, o.Name), Escape(o.Action), suffix); err != nil {
			return err
		}
	}
	return nil
}

// Delete deletes the named object of kind (api.KindApp, api.KindService,
// api.KindPod or api.KindNode) and prints "app/web deleted". Deleting a
// node revokes its certificates at once and frees its pod CIDR; its pods
// are replaced elsewhere.
func Delete(ctx context.Context, c *client.Client, w io.Writer, kind, name string) error {
	var err error
	switch kind {
	case api.KindApp:
		err = c.DeleteApp(ctx, name)
	case api.KindService:
		err = c.DeleteService(ctx, name)
	case api.KindPod:
		err = c.DeletePod(ctx, name)
	case api.KindNode:
		err = c.DeleteNode(ctx, name)
	default:
		return fmt.Errorf("cannot delete %s: want app, service, pod or node", kind)
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s deleted\n", Ref(kind, name))
	return err
}

// DeleteManifests deletes every service and app of the manifests at paths,
// services first so that no traffic is sent to pods that are going. It goes
// on after an error and returns them all; with ignoreNotFound an object
// that is already gone is no error.
func DeleteManifests(ctx context.Context, c *client.Client, w io.Writer, paths []string, ignoreNotFound bool) error {
	m, err := configs.LoadManifests(paths...)
	if err != nil {
		return err
	}
	var errs []error
	del := func(kind string, names []string) {
		for _, name := range names {
			err := Delete(ctx, c, w, kind, name)
			switch {
			case err == nil:
			case client.IsNotFound(err) && ignoreNotFound:
			case client.IsNotFound(err):
				errs = append(errs, fmt.Errorf("%s not found", Ref(kind, name)))
			case client.IsUnreachable(err):
				errs = append(errs, err)
				return
			default:
				errs = append(errs, fmt.Errorf("delete %s: %w", Ref(kind, name), err))
			}
		}
	}
	del(api.KindService, slices.Sorted(maps.Keys(m.Services)))
	if len(errs) == 0 || !client.IsUnreachable(errs[len(errs)-1]) {
		del(api.KindApp, slices.Sorted(maps.Keys(m.Apps)))
	}
	return errors.Join(errs...)
}
