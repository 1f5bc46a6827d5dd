// Package cli holds the logic of the skiff command line that a test would
// want to call: turning manifests into API calls and API answers into
// tables, descriptions and error lines. cmd/skiff only wires flags to it.
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

// EnvAPI names the environment variable that overrides the default API
// address.
const EnvAPI = "SKIFF_API"

// DefaultAPI returns the API address used when --api is not given: $SKIFF_API
// or client.DefaultAddr.
func DefaultAPI() string {
	if v := os.Getenv(EnvAPI); v != "" {
		return v
	}
	return client.DefaultAddr
}

// PrintError writes a failed command's error to w: one line "skiff: ...",
// then one line per field detail of an API error, or every line of a
// manifest's validation errors (file:line:col: field: message). Joined
// errors (errors.Join) are printed one after the other. Every message goes
// through Escape: the server's (and a manifest's) text reaches the
// terminal only as printable characters, each line stays one line.
func PrintError(w io.Writer, err error) {
	var list configs.ErrorList
	if errors.As(err, &list) {
		for _, e := range list {
			fmt.Fprintln(w, Escape(e.Error()))
		}
		return
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			PrintError(w, e)
		}
		return
	}
	var ue *client.UnreachableError
	if errors.As(err, &ue) {
		fmt.Fprintf(w, "skiff: cannot reach the skiff API at %s (is skiff server running?)\n", Escape(ue.Addr))
		return
	}
	var ae *client.APIError
	if !errors.As(err, &ae) || len(ae.Details) == 0 {
		fmt.Fprintf(w, "skiff: %s\n", Escape(err.Error()))
		return
	}
	// The server's message often repeats its details; print each once.
	repeated := true
	for _, d := range ae.Details {
		repeated = repeated && strings.Contains(ae.Message, d.Message)
	}
	switch {
	case repeated && len(ae.Details) == 1:
		fmt.Fprintf(w, "skiff: %s\n", Escape(err.Error()))
		return
	case repeated:
		fmt.Fprintf(w, "skiff: %s: %d errors\n", Escape(strings.TrimSuffix(err.Error(), ae.Error())+"the server rejected the request"), len(ae.Details))
	default:
		fmt.Fprintf(w, "skiff: %s\n", Escape(err.Error()))
	}
	for _, d := range ae.Details {
		if d.Field != "" {
			fmt.Fprintf(w, "  %s: %s\n", Escape(d.Field), Escape(d.Message))
		} else {
			fmt.Fprintf(w, "  %s\n", Escape(d.Message))
		}
	}
}
