package clustertest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ip runs `ip args...` and returns its error with its output.
func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ipIn runs `ip -n ns args...`.
func ipIn(ns string, args ...string) error { return ip(append([]string{"-n", ns}, args...)...) }

// swPort is the switch side of node i's veth.
func (c *Cluster) swPort(i int) string { return fmt.Sprintf("n%d", i) }

// makeSwitch makes the switch netns with bridge br0, up.
func (c *Cluster) makeSwitch() error {
	if err := ip("netns", "add", c.sw); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "br0", "type", "bridge"},
		{"link", "set", "br0", "up"},
	} {
		if err := ipIn(c.sw, args...); err != nil {
			return err
		}
	}
	return nil
}

// makeNode makes node n's netns with lo up and eth0, a veth whose peer sits
// on the switch's bridge, holding the node's address. The veth is created
// inside the node's netns, so no link ever appears in the host's.
func (c *Cluster) makeNode(n *Node) error {
	if err := ip("netns", "add", n.Name); err != nil {
		return err
	}
	port := c.swPort(n.Index)
	for _, step := range []struct {
		ns   string
		args []string
	}{
		{n.Name, []string{"link", "set", "lo", "up"}},
		{n.Name, []string{"link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", c.sw}},
		{n.Name, []string{"addr", "add", n.Addr + "/24", "dev", "eth0"}},
		{n.Name, []string{"link", "set", "eth0", "up"}},
		{c.sw, []string{"link", "set", port, "master", "br0"}},
		{c.sw, []string{"link", "set", port, "up"}},
	} {
		if err := ipIn(step.ns, step.args...); err != nil {
			return err
		}
	}
	return nil
}

// cleanup stops every node, runs `skiff agent --cleanup` in each netns,
// checks that nothing is left, removes the namespaces and the dir.
func (c *Cluster) cleanup() {
	t := c.t
	for i := range c.Nodes {
		if n := c.Nodes[i]; n.proc != nil {
			_ = n.proc.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for i := range c.Nodes {
		c.Stop(i, 10*time.Second)
	}
	for _, n := range c.Nodes {
		out, err := exec.Command("nsenter", "--net="+n.NetnsPath(), bin.skiff, "agent", "--cleanup", "--config", n.Config).CombinedOutput()
		if err != nil {
			t.Errorf("node %d: skiff agent --cleanup: %v\n%s", n.Index, err, out)
		}
		// Killed processes leave the cgroup once they are gone; allow
		// them a moment.
		var procs []string
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if procs = procsInCgroup(n.CgroupParent); len(procs) == 0 || time.Now().After(deadline) {
				break
			}
		}
		if len(procs) > 0 {
			t.Errorf("node %d: processes left in cgroup %s: %v", n.Index, n.CgroupParent, procs)
		}
		if dirs := cgroupDirs(n.CgroupParent); len(dirs) > 0 {
			t.Errorf("node %d: cgroups left: %v", n.Index, dirs)
		}
	}
	if m := mountsUnder(c.dir); len(m) > 0 {
		t.Errorf("mounts left under %s: %v", c.dir, m)
	}
	if t.Failed() {
		for _, n := range c.Nodes {
			t.Logf("--- node %d (%s) log %s ends:\n%s", n.Index, n.Name, n.Log, tailFile(n.Log, 40))
		}
		keep := filepath.Join(os.TempDir(), "skiff-clustertest-"+c.id+"-logs")
		if err := os.MkdirAll(keep, 0o700); err == nil {
			for _, n := range c.Nodes {
				if b, err := os.ReadFile(n.Log); err == nil {
					_ = os.WriteFile(filepath.Join(keep, filepath.Base(n.Log)), b, 0o600)
				}
			}
			t.Logf("full logs kept in %s", keep)
		}
	}
	for _, n := range c.Nodes {
		if _, err := os.Stat(n.NetnsPath()); err != nil {
			continue // New failed before making it
		}
		if err := ip("netns", "del", n.Name); err != nil {
			t.Errorf("node %d: %v", n.Index, err)
		}
	}
	if err := ip("netns", "del", c.sw); err != nil {
		t.Errorf("switch: %v", err)
	}
	if err := os.RemoveAll(c.dir); err != nil {
		t.Errorf("remove %s: %v", c.dir, err)
	}
}

// procsInCgroup lists the pids, zombies aside (dead, waiting for init to
// reap them), whose cgroup path (any hierarchy) has a component named
// parent.
func procsInCgroup(parent string) []string {
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		if err != nil {
			continue
		}
		if strings.Contains(string(b), "/"+parent+"/") || strings.Contains(string(b), "/"+parent+"\n") {
			if st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil && zombie(string(st)) {
				continue
			}
			out = append(out, e.Name())
		}
	}
	return out
}

// cgroupDirs lists the directories named parent at the top of any cgroup
// hierarchy, or one level below (a systemd slice).
func cgroupDirs(parent string) []string {
	var out []string
	for _, pattern := range []string{"/sys/fs/cgroup/" + parent, "/sys/fs/cgroup/*/" + parent, "/sys/fs/cgroup/*/*/" + parent} {
		m, _ := filepath.Glob(pattern)
		out = append(out, m...)
	}
	return out
}

// mountsUnder lists the mount points under dir in this mount namespace.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return []string{err.Error()}
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir) {
			out = append(out, fields[4])
		}
	}
	return out
}

// tailFile returns the last lines of a file.
func tailFile(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "(no log)"
		}
		return err.Error()
	}
	l := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// zombie reports whether a /proc/PID/stat line is a zombie's (state Z
// after the parenthesised command name).
func zombie(stat string) bool {
	i := strings.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}
