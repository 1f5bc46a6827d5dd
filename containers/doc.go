// Package containers runs pods on one node without a daemon beside it.
//
// It takes images from the node's image store (package images, which pulls,
// imports, unpacks and garbage-collects them), stacks their unpacked layers
// with overlayfs under each container's writable layer, and runs containers
// through runc's libcontainer with real namespaces and cgroups (v1 fs
// manager on hybrid hosts). All containers of a pod share one network namespace (given by path
// or made by the runtime), one IPC namespace and one UTS namespace whose
// hostname is PodConfig.Hostname, or the pod name when that is empty.
//
// Every container is confined as Docker confines one by default, with
// fewer capabilities (spec_linux.go, seccomp_linux.go): only AUDIT_WRITE,
// KILL and NET_BIND_SERVICE, no_new_privs, Docker's default seccomp profile
// (unless ContainerConfig.Seccomp is unconfined and Config.AllowUnconfined
// lets it be), a cgroup namespace of its own, and Docker's masked and
// read-only /proc and /sys paths. The seccomp filter needs the binary built
// with -tags seccomp (and libseccomp); without it such a container is
// refused with ErrSeccompUnsupported, never run unconfined.
//
// Each container is run by a small shim: the calling binary re-executed as
// "containers-shim" in its own session. The shim is the container's parent: it
// owns the container's stdout and stderr, writes them as timestamped lines to
// rotating log files, waits for the container and records its exit (code,
// signal, OOM kill) in the state directory. The container and its logs thus
// outlive the process that started them (kill -9, systemd KillMode=process),
// and a Runtime opened later on the same state directory re-adopts running
// containers and learns the exit of those that stopped meanwhile.
//
// The shim starts in Go and lives in C. Re-executed as "containers-shim",
// the binary creates and starts the container through libcontainer with
// its stdout and stderr on pipes, then execs itself again as
// "containers-shim-c": the exec keeps the pid, so the container stays the
// shim's child, and drops the Go runtime. A cgo constructor (package
// internal/cshim, compiled with this package, so every build that links
// libcontainer, which needs cgo anyway, has it) takes that process over
// before Go starts: a single-threaded C loop that writes the report, copies
// the pipes into the log, waits for the container, records its exit and
// runs "containers-destroy" (Go, for a moment) to remove the container's
// cgroups and libcontainer state. A running container thus costs about
// 0.2 MB PSS (0.5 MB for a lone shim, which shares the binary's pages with
// no other) where the Go shim it replaced cost 4-5 MB (19 MB alone);
// bench/pss.sh measures both. A shim per container rather than one
// supervisor per node: a supervisor that owned every container's pipes
// would be a single point whose crash loses every container's logs and
// exit codes at once, and would need its pipes handed over (fd passing)
// to survive its own restart; with one small shim each, a crash costs one
// container, the runtime's contract (spec file, report, pidfd adoption,
// exit file) stays as it was, and the shims of 100 containers take 20 MB.
// A container has one shim at a time: the shim holds the container's lock
// from before the create until the destroy, and a later one (started by a
// skiff restarted while the first was still starting it) kills the first
// one's container and waits for the lock (see lockContainer).
//
// A binary that uses this package must call Init first thing in main (and
// tests in TestMain): it runs libcontainer's init and the shim when the
// binary is re-executed for them.
//
// A node agent uses it like this:
//
//	rt, err := containers.Open(ctx, cfg)           // adopts what runs already
//	img, err := rt.Images().Ensure(ctx, ref, onProgress)
//	err = rt.StartPod(ctx, containers.PodConfig{Name: "web-1", NetNSPath: "/run/netns/web-1"})
//	st, err := rt.StartContainer(ctx, "web-1", containers.ContainerConfig{Name: "http", Image: ref})
//	for ev := range rt.Events() { ... }           // exits, with the restart decision
//	rt.Status()                                    // every container, for status reports
//	rt.Logs(ctx, "web-1", "http", containers.LogOptions{Tail: 100, Follow: true})
//	rt.Exec(ctx, "web-1", "http", containers.ExecOptions{Args: []string{"ls"}})
//	rt.Stats("web-1", "http")
//	rt.RemovePod(ctx, "web-1", 10*time.Second)     // SIGTERM, grace, SIGKILL, then all is gone
//
// and `skiff agent --cleanup` calls Cleanup(cfg). The runtime imports
// package images, never the reverse: Open opens the store on Root (GC then
// spares the layers under the runtime's containers) and imports the
// archives dropped into Root/images. A command that works on the images
// beside a running agent (`skiff images`) opens the store alone with
// OpenImageStore, and asks ImagesInUse which images the node's containers
// use. Any number of stores and runtimes, in one process or several, may
// share a Root (see package images).
//
// On disk, besides the image store's Root/images, Root/content and
// Root/layers (see package images): Root/layers/empty the empty lower
// directory of containers whose image has no layer, Root/pods/<pod> the
// containers' writable layers, volumes and logs (<container>.log, rotated to
// .log.1, ...). StateDir/libcontainer is libcontainer's state,
// StateDir/containers/<pod>_<container> the runtime's records and the shim's
// exit file, StateDir/pods/<pod> the pinned namespaces.
//
// Host volumes bind-mount node paths, so they are refused unless
// Config.HostPaths allows them (HostPathPolicy; the zero value refuses
// all): the path, as written and with its symlinks resolved, must be under
// an allowed prefix and must neither be, be inside nor contain a reserved
// path (skiff's own directories, the runtime's Root and StateDir). The
// check runs at StartPod and again at every container start, which mounts
// the resolved path; a refusal is a *HostPathError.
//
// The package knows nothing of services or of the cluster: the node agent
// maps its pod specs onto PodConfig and ContainerConfig.
package containers
