//go:build linux && cgo

// Package cshim is the container shim in C: a constructor that runs before
// the Go runtime starts when the binary is executed as "containers-shim-c"
// (by the Go shim of package containers, once it has started the
// container), supervises the container for the rest of its life and exits,
// so that a running container costs a small C process instead of a Go
// runtime. Import it for its side effect; cshim.c has the protocol.
package cshim

/*
#cgo CFLAGS: -Wall -O2
*/
import "C"
