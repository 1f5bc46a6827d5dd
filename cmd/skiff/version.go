package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version and commit are set at link time by scripts/build.sh
// (-ldflags "-X main.version=... -X main.commit=..."). A plain `go build`
// leaves them empty: then the commit comes from the VCS stamp Go records
// in the binary, if any.
var (
	version string
	commit  string
)

// buildInfo returns the version ("dev" when not injected), the commit and
// the architecture, armv7 for GOARCH=arm GOARM=7 (the GOARM build setting
// Go records in the binary).
func buildInfo() (ver, com, arch string) {
	ver, com, arch = version, commit, runtime.GOARCH
	if ver == "" {
		ver = "dev"
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && com == "":
				com = s.Value
			case s.Key == "GOARM" && arch == "arm":
				arch = "armv" + s.Value
			}
		}
	}
	if com == "" {
		com = "unknown"
	}
	return ver, com, arch
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print skiff's version, commit and os/arch",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ver, com, arch := buildInfo()
			fmt.Fprintf(cmd.OutOrStdout(), "skiff %s\ncommit %s\n%s/%s %s\n", ver, com, runtime.GOOS, arch, runtime.Version())
			return nil
		},
	}
}
