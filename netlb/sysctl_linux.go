package netlb

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// sysctlsFile, in StateDir, holds "name=value" lines: the values that the
// restored sysctls had before netlb first changed them. SetupNode writes it
// once; Cleanup writes the values back and then removes it.
const sysctlsFile = "sysctls"

// restoredSysctl is a sysctl that Cleanup puts back as SetupNode found it.
// The others that SetupNode sets (ip_forward, bridge-nf-call-iptables,
// send_redirects) stay set: other software on the node may rely on them by
// then, and none of them opens the node.
type restoredSysctl struct {
	name string // path under /proc/sys
	// kernelDefault is recorded instead of the value found when an older
	// netlb, which kept no record, has already set the sysctl up: the
	// value found is then netlb's own.
	kernelDefault string
}

var restoredSysctls = []restoredSysctl{
	{name: routeLocalnet, kernelDefault: "0"},
}

// readSysctl reads a sysctl of the calling thread's network namespace.
func readSysctl(name string) (string, error) {
	b, err := os.ReadFile("/proc/sys/" + name)
	if err != nil {
		return "", fmt.Errorf("read sysctl %s: %w", name, err)
	}
	return string(bytes.TrimSpace(b)), nil
}

// recordSysctls notes, once, the values of restoredSysctls before SetupNode
// changes them. A later SetupNode (a restart) keeps the first record, since
// what it would read now is netlb's own value. It must run before
// recordCreatedTables: the tables file without this one is how it tells a
// node set up by an older netlb.
func (n *Network) recordSysctls() error {
	p := filepath.Join(n.cfg.StateDir, sysctlsFile)
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	_, err := os.Stat(filepath.Join(n.cfg.StateDir, tablesFile))
	older := err == nil
	var b strings.Builder
	for _, s := range restoredSysctls {
		v, err := readSysctl(s.name)
		if err != nil {
			return err
		}
		if older {
			v = s.kernelDefault
		}
		fmt.Fprintf(&b, "%s=%s\n", s.name, v)
	}
	if err := os.MkdirAll(n.cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	// Written whole or not at all: a half record would be taken for the
	// node's own values by every later SetupNode.
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("record sysctls: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("record sysctls: %w", err)
	}
	return nil
}

// restoreSysctls writes back the values that recordSysctls noted. It
// reports whether every one was written (or there was no record), so that
// Cleanup removes the record only then. Only sysctls listed in
// restoredSysctls are written, whatever the file holds.
func (n *Network) restoreSysctls() (done bool, err error) {
	b, err := os.ReadFile(filepath.Join(n.cfg.StateDir, sysctlsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", sysctlsFile, err)
	}
	known := map[string]bool{}
	for _, s := range restoredSysctls {
		known[s.name] = true
	}
	var errs []error
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, value, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok || !known[name] {
			continue
		}
		errs = append(errs, writeSysctl(name, value))
	}
	if err := errors.Join(errs...); err != nil {
		return false, fmt.Errorf("restore sysctls: %w", err)
	}
	return true, nil
}
