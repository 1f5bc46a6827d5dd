//go:build linux && cgo

// Package cshim is the container shim in C: a constructor that runs before
// the Go runtime starts when the binary is re-executed as
// "containers-shim SPEC", does the shim's whole job and exits, so that a
// running container costs a small C process instead of a Go runtime. Import
// it for its side effect; package containers documents the protocol.
package cshim

/*
#cgo CFLAGS: -Wall -O2
*/
import "C"
