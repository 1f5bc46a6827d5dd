// Package images is a node's image store: it pulls OCI images from
// registries (go-containerregistry) with progress, imports `docker save`
// and OCI-layout archives (air-gapped sites), verifies every blob against
// its digest, unpacks each layer once into a content-addressed directory
// (OCI whiteouts and opaque directories become overlayfs ones), and lists,
// removes and garbage-collects images and layers.
//
// The container runtime (package containers) stacks the unpacked layers
// with overlayfs under each container; it opens the store and tells it,
// through Config.InUse, which layers its containers stand on. This package
// knows nothing of containers or pods.
//
//	st, err := images.Open(images.Config{Root: dataDir, InUse: layersUnderContainers})
//	img, err := st.Ensure(ctx, "registry.local:5000/echo:1.2", onProgress) // pull unless present
//	imgs, err := st.Import(ctx, "echo.tar", nil)                             // docker save or OCI layout
//	dir := st.LayerDir(img.Layers[0])                                        // an overlayfs lower dir
//	err = st.Remove("registry.local:5000/echo:1.2")
//	removed, err := st.GC()                                                  // layers nothing uses
//
// Layers are untrusted input, unpacked before their digests can be
// checked: every entry is resolved within its layer's directory, hostile
// whiteouts, sparse files and overlayfs's own extended attributes are
// refused or skipped, and Config.Limits caps a layer's bytes, entries and
// the disk space it must leave free (see Limits). A refused layer leaves
// the store as it was.
//
// Any number of stores, in one process or several (a node's agent and
// `skiff images` beside it), may share a Root: the index, each layer's
// unpack and GC are guarded by flock(2) locks (see storelock.go).
//
// On disk: Root/images/*.tar are archives to import (ImportDir),
// Root/content the image index (images.json), the record of imported
// archives (imported.json) and the store's locks and pending markers,
// Root/layers/<diff id> the unpacked layers. A layer directory that exists
// is whole.
package images
