package containers

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestNextBackoff(t *testing.T) {
	tests := []struct {
		name   string
		inRow  int
		ran    time.Duration
		want   time.Duration
		wantIn int
	}{
		{"first restart", 0, time.Second, time.Second, 1},
		{"second", 1, time.Second, 2 * time.Second, 2},
		{"fifth", 4, time.Second, 16 * time.Second, 5},
		{"capped", 9, time.Second, 5 * time.Minute, 10},
		{"far past the cap", 40, time.Second, 5 * time.Minute, 41},
		{"reset after ten minutes", 7, 10 * time.Minute, time.Second, 1},
		{"no reset just under", 7, 10*time.Minute - time.Second, 128 * time.Second, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, in := nextBackoff(tt.inRow, tt.ran)
			if got != tt.want || in != tt.wantIn {
				t.Errorf("nextBackoff(%d, %s) = %s, %d; want %s, %d", tt.inRow, tt.ran, got, in, tt.want, tt.wantIn)
			}
		})
	}
}

func TestShouldRestart(t *testing.T) {
	tests := []struct {
		policy RestartPolicy
		code   int
		want   bool
	}{
		{RestartAlways, 0, true}, {RestartAlways, 1, true}, {"", 0, true},
		{RestartOnFailure, 0, false}, {RestartOnFailure, 137, true},
		{RestartNever, 0, false}, {RestartNever, 1, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.policy, tt.code), func(t *testing.T) {
			if got := shouldRestart(tt.policy, tt.code); got != tt.want {
				t.Errorf("got %v", got)
			}
		})
	}
}

func TestMergeCommand(t *testing.T) {
	img := v1.Config{Entrypoint: []string{"/app"}, Cmd: []string{"-listen", ":80"}}
	tests := []struct {
		name string
		c    ContainerConfig
		want []string
	}{
		{"image only", ContainerConfig{}, []string{"/app", "-listen", ":80"}},
		{"args replace cmd", ContainerConfig{Args: []string{"-v"}}, []string{"/app", "-v"}},
		{"command drops cmd", ContainerConfig{Command: []string{"sh"}}, []string{"sh"}},
		{"command and args", ContainerConfig{Command: []string{"sh"}, Args: []string{"-c", "x"}}, []string{"sh", "-c", "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mergeCommand(img, tt.c); !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestBuildProcess(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\napp:x:1000:\nextra:x:2000:app\n"), 0o644)
	img := v1.Config{Cmd: []string{"sh"}, Env: []string{"PATH=/bin", "A=1", "B=2"}, WorkingDir: "/srv", User: "app"}
	tests := []struct {
		name      string
		c         ContainerConfig
		uid, gid  int
		cwd       string
		env       []string
		wantError bool
	}{
		{"image user and workdir", ContainerConfig{Name: "c"}, 1000, 1000, "/srv",
			[]string{"PATH=/bin", "A=1", "B=2", "HOSTNAME=pod", "HOME=/home/app"}, false},
		{"spec overrides", ContainerConfig{Name: "c", User: "0:2000", Workdir: "/x", Env: map[string]string{"B": "3", "C": "4"}}, 0, 2000, "/x",
			[]string{"PATH=/bin", "A=1", "B=3", "C=4", "HOSTNAME=pod", "HOME=/root"}, false},
		{"numeric user not in passwd", ContainerConfig{Name: "c", User: "4242"}, 4242, 0, "/srv", nil, false},
		{"unknown user name", ContainerConfig{Name: "c", User: "nobody"}, 0, 0, "", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := buildProcess(img, tt.c, root, "pod")
			if tt.wantError {
				if err == nil {
					t.Fatal("want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.UID != tt.uid || p.GID != tt.gid || p.Cwd != tt.cwd {
				t.Errorf("uid %d gid %d cwd %s", p.UID, p.GID, p.Cwd)
			}
			if tt.env != nil && !slices.Equal(p.Env, tt.env) {
				t.Errorf("env %q, want %q", p.Env, tt.env)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"defaults with paths", func(*Config) {}, ""},
		{"no root", func(c *Config) { c.Root = "" }, "root"},
		{"no state dir", func(c *Config) { c.StateDir = "" }, "state dir"},
		{"relative root", func(c *Config) { c.Root = "data" }, "root"},
		{"bad cgroup parent", func(c *Config) { c.CgroupParent = "/abs" }, "cgroup parent"},
		{"tiny log size", func(c *Config) { c.LogMaxSize = 10 }, "log max size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			c.Root, c.StateDir = "/var/lib/x", "/run/x/containers"
			tt.mod(&c)
			err := c.Validate()
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestLogRotationAndTail(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.log")
	w, err := openLogWriter(path, 4096, 3)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		if err := w.copyLines("stdout", strings.NewReader(fmt.Sprintf("line %03d\n", i))); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	for _, p := range []string{path, path + ".1", path + ".2"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("rotated file: %v", err)
		}
		if fi.Size() > 4096 {
			t.Errorf("%s is %d bytes, over the limit", p, fi.Size())
		}
	}
	if _, err := os.Stat(path + ".3"); err == nil {
		t.Error("more files kept than LogMaxFiles")
	}
	rc, err := readLogs(context.Background(), path, 3, LogOptions{Tail: 2})
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4096)
	n, _ := readFull(rc, b)
	lines := strings.Split(strings.TrimSpace(string(b[:n])), "\n")
	if len(lines) != 2 || !strings.HasSuffix(lines[0], "stdout F line 298") || !strings.HasSuffix(lines[1], "stdout F line 299") {
		t.Errorf("tail 2 = %q", lines)
	}
}

func readFull(rc interface{ Read([]byte) (int, error) }, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := rc.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func TestLongLinesArePartial(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := openLogWriter(path, 1<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", maxLogLine+10)
	if err := w.copyLines("stderr", strings.NewReader(long+"\nlast")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], " stderr P ") || !strings.Contains(lines[1], " stderr F xxxxxxxxxx") || !strings.HasSuffix(lines[2], " stderr F last") {
		t.Errorf("lines: %d, %.60q", len(lines), lines)
	}
}

// A log that cannot be written for a while (here its directory is gone,
// so the rotation's open or truncate fails) drops lines, says so once, and
// writes again at the first line after it can: the writer never stays on
// a closed file and never stops reading the stream.
func TestLogWriterRecoversFromFailedRotation(t *testing.T) {
	for _, files := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d files", files), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "logs")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "c.log")
			w, err := openLogWriter(path, 200, files)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			var warns []string
			w.warn = func(m string) { warns = append(warns, m) }
			lines := func(from, to int) string {
				var b strings.Builder
				for i := from; i < to; i++ {
					fmt.Fprintf(&b, "line %03d\n", i)
				}
				return b.String()
			}
			if err := w.copyLines("stdout", strings.NewReader(lines(0, 3))); err != nil {
				t.Fatal(err)
			}
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			// Past the size: the rotation fails, and so does every line
			// until the directory is back.
			if err := w.copyLines("stdout", strings.NewReader(lines(3, 20))); err != nil {
				t.Fatalf("copyLines with the log gone: %v, want the stream read on", err)
			}
			if len(warns) != 1 || !strings.Contains(warns[0], "dropping lines") {
				t.Fatalf("warnings while failing: %q, want one that says lines are dropped", warns)
			}
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := w.copyLines("stdout", strings.NewReader(lines(20, 21))); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil || !strings.HasSuffix(string(b), "stdout F line 020\n") {
				t.Fatalf("log after the directory came back: %v %q, want line 020", err, b)
			}
			if len(warns) != 2 || !strings.Contains(warns[1], "written again") {
				t.Errorf("warnings: %q, want a second that says the log works again", warns)
			}
		})
	}
}
