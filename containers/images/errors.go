package images

import "errors"

// Errors that callers check with errors.Is.
var (
	// ErrNotFound: the registry has no such image (a pull's 404).
	ErrNotFound = errors.New("not found")
	// ErrImageNotPresent: the store has no image of that reference or ID.
	ErrImageNotPresent = errors.New("image not present")
	// ErrBadReference: an image reference does not parse.
	ErrBadReference = errors.New("bad image reference")
	// ErrBadArchive: an image archive is neither a docker save nor an OCI
	// layout tarball, or its content is corrupt.
	ErrBadArchive = errors.New("bad image archive")
	// ErrDigestMismatch: content does not match the digest that names it.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrUnsafeLayer: a layer entry would reach outside the layer's
	// directory, or is of a kind the store refuses (a whiteout that names
	// no entry, a sparse file).
	ErrUnsafeLayer = errors.New("unsafe layer")
	// ErrLayerTooLarge: a layer passes Limits.MaxLayerBytes or
	// Limits.MaxLayerEntries.
	ErrLayerTooLarge = errors.New("layer too large")
	// ErrNoSpace: unpacking would leave less than Limits.MinFreeBytes free.
	ErrNoSpace = errors.New("not enough free space")
)
