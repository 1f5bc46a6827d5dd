package configs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func parseGood(t *testing.T, file string) *Manifest {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseManifest(filepath.Base(file), data)
	if err != nil {
		t.Fatalf("ParseManifest(%s): %v", file, err)
	}
	return m
}

// designApp is the app of DESIGN.md's example, defaults applied.
func designApp() *AppSpec {
	return &AppSpec{
		Replicas:         ptr(3),
		Mode:             ModeReplicas,
		Restart:          RestartAlways,
		NodeSelector:     map[string]string{"site": "shop-1"},
		TerminationGrace: Duration(10 * time.Second),
		Update: &UpdateSpec{
			MaxSurge:         ptr(1),
			MaxUnavailable:   ptr(0),
			AutoRollback:     true,
			ProgressDeadline: Duration(time.Minute),
		},
		Autoscale: &AutoscaleSpec{Min: 2, Max: 8, TargetRPS: 200, TargetCPU: 0.7},
		Containers: map[string]*ContainerSpec{"http": {
			Image:  "registry.local:5000/echo:1.2",
			Args:   []string{"-listen", ":8080"},
			Env:    map[string]string{"GREETING": "hello"},
			Ports:  map[string]int{"http": 8080},
			CPU:    0.25,
			Memory: 64 << 20,
			Mounts: map[string]string{"cache": "/cache"},
			Readiness: &Probe{
				HTTPGet:          "/healthz",
				Port:             PortRef{Number: 8080},
				Period:           Duration(2 * time.Second),
				Timeout:          Duration(time.Second),
				FailureThreshold: 3,
				SuccessThreshold: 1,
			},
		}},
		Volumes: map[string]*VolumeSpec{"cache": {Type: VolumeEmpty}},
	}
}

func TestParseManifestGood(t *testing.T) {
	tests := []struct {
		name string
		file string
		want *Manifest
	}{
		{
			// DESIGN.md's example, with type = "node-port" (see
			// TestDesignExampleVerbatim).
			name: "design",
			file: "testdata/good/design.toml",
			want: &Manifest{
				Apps: map[string]*AppSpec{"web": designApp()},
				Services: map[string]*ServiceSpec{"web": {
					App: "web", Port: 80, TargetPort: PortRef{Name: "http"}, Protocol: ProtocolTCP,
					Type: ServiceNodePort, NodePort: 30080, Affinity: AffinityNone,
				}},
			},
		},
		{
			name: "minimal gets every default",
			file: "testdata/good/minimal.toml",
			want: &Manifest{
				Apps: map[string]*AppSpec{"hello": {
					Replicas: ptr(1), Mode: ModeReplicas, Restart: RestartAlways,
					TerminationGrace: Duration(10 * time.Second),
					Containers:       map[string]*ContainerSpec{"main": {Image: "hello"}},
					Update:           &UpdateSpec{MaxSurge: ptr(1), MaxUnavailable: ptr(0), ProgressDeadline: Duration(time.Minute)},
				}},
				Services: map[string]*ServiceSpec{"hello": {
					App: "hello", Port: 8080, TargetPort: PortRef{Number: 8080}, Protocol: ProtocolTCP,
					Type: ServiceCluster, Affinity: AffinityNone,
				}},
			},
		},
		{
			name: "every key",
			file: "testdata/good/full.toml",
			want: &Manifest{
				Apps: map[string]*AppSpec{"edge-proxy": {
					Mode:             ModePerNode,
					Restart:          RestartOnFailure,
					NodeSelector:     map[string]string{"role": "gateway", "example.com/zone": "north"},
					TerminationGrace: Duration(30 * time.Second),
					Update:           &UpdateSpec{MaxSurge: ptr(0), MaxUnavailable: ptr(2), ProgressDeadline: Duration(2 * time.Minute)},
					Containers: map[string]*ContainerSpec{
						"proxy": {
							Image:        "registry.local:5000/tools/proxy@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
							Command:      []string{"/bin/proxy"},
							Args:         []string{"--config", "/etc/proxy/proxy.toml"},
							Env:          map[string]string{"LOG_LEVEL": "debug", "_UNDERSCORE": ""},
							Workdir:      "/srv",
							User:         "1000:1000",
							Ports:        map[string]int{"http": 8080, "admin": 9000},
							HostPorts:    map[string]int{"http": 80},
							CPU:          1,
							Memory:       128 << 20,
							Pids:         256,
							Mounts:       map[string]string{"config": "/etc/proxy", "scratch": "/tmp", "logs": "/var/log/proxy"},
							ReadOnlyRoot: true,
							Seccomp:      SeccompUnconfined,
							Readiness: &Probe{TCP: true, Port: PortRef{Name: "http"}, Period: DefaultProbePeriod,
								Timeout: DefaultProbeTimeout, FailureThreshold: 3, SuccessThreshold: 1},
							Liveness: &Probe{HTTPGet: "/healthz?deep=1", Port: PortRef{Name: "admin"},
								InitialDelay: Duration(5 * time.Second), Period: Duration(3 * time.Second),
								Timeout: Duration(500 * time.Millisecond), FailureThreshold: 5, SuccessThreshold: 1},
							Startup: &Probe{Exec: []string{"/bin/proxy", "check"}, Period: Duration(time.Second),
								Timeout: DefaultProbeTimeout, FailureThreshold: 30, SuccessThreshold: 1},
						},
						"log-shipper": {
							Image:   "busybox",
							Command: []string{"sh", "-c", "while true; do\n  cat /var/log/proxy/* ; sleep 5\ndone"},
							Mounts:  map[string]string{"logs": "/logs"},
							Seccomp: SeccompDefault,
						},
					},
					Volumes: map[string]*VolumeSpec{
						"config":  {Type: VolumeHost, Path: "/etc/skiff/proxy"},
						"scratch": {Type: VolumeMemory, Size: 16 << 20},
						"logs":    {Type: VolumeEmpty},
					},
				}},
				Services: map[string]*ServiceSpec{"edge-proxy": {
					App: "edge-proxy", Port: 443, TargetPort: PortRef{Number: 8080}, Protocol: ProtocolUDP,
					Type: ServiceLoadBalancer, NodePort: 32000, ExternalIP: "192.168.10.200",
					Affinity: AffinityClientIP, ClusterIP: "10.96.0.53",
				}},
			},
		},
		{
			name: "empty file",
			file: "testdata/good/empty.toml",
			want: &Manifest{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseGood(t, tt.file)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got\n%s\nwant\n%s", mustJSON(t, got), mustJSON(t, tt.want))
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate after ParseManifest: %v", err)
			}
		})
	}
}

// TestDesignExampleVerbatim parses DESIGN.md's example as printed. It sets
// node_port on a service of type "cluster", which gets no node port: that is
// reported, and it is the only error.
func TestDesignExampleVerbatim(t *testing.T) {
	data, err := os.ReadFile("testdata/design_verbatim.toml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = ParseManifest("web.toml", data)
	want := `web.toml:39:13: service.web.node_port: needs type "node-port" or "load-balancer"`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	fixed := strings.Replace(string(data), `type = "cluster"  `, `type = "node-port"`, 1)
	m, err := ParseManifest("web.toml", []byte(fixed))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m.Apps["web"], designApp()) {
		t.Errorf("app web:\n%s", mustJSON(t, m.Apps["web"]))
	}
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoadManifests(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"a.toml":          "[app.web.container.http]\nimage = \"echo:1\"\nports = { http = 8080 }\n",
		"b.toml":          "[service.web]\napp = \"web\"\nport = 80\ntarget_port = \"http\"\n",
		"notes.txt":       "not a manifest",
		".hidden.toml":    "this is not toml",
		"sub/skip.toml":   "neither is this: subdirectories are not read",
		"extra/api.toml":  "[app.api.container.main]\nimage = \"api:2\"\n",
		"extra/README.md": "x",
	})
	m, err := LoadManifests(dir, filepath.Join(dir, "extra", "api.toml"), filepath.Join(dir, "a.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Apps) != 2 || m.Apps["web"] == nil || m.Apps["api"] == nil || len(m.Services) != 1 || m.Services["web"] == nil {
		t.Fatalf("merged manifest: %s", mustJSON(t, m))
	}
	if got := m.Services["web"].TargetPort; got != (PortRef{Name: "http"}) {
		t.Errorf("target_port = %v", got)
	}

	empty := t.TempDir()
	m, err = LoadManifests(empty)
	if err != nil || len(m.Apps) != 0 || len(m.Services) != 0 {
		t.Errorf("empty directory: %v, %v", m, err)
	}
}

func TestLoadManifestsErrors(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"1-apps.toml":     "[app.web.container.http]\nimage = \"echo:1\"\nports = { http = 8080 }\n\n[service.web]\napp = \"web\"\nport = 80\n",
		"2-again.toml":    "# the same names again\n[app.web.container.http]\nimage = \"echo:2\"\n\n[service.web]\napp = \"web\"\nport = 81\n",
		"3-bad.toml":      "[app.db]\nreplicas = \"1\"\n[app.db.container.pg]\nimage = \"pg:16\"\n",
		"4-syntax.toml":   "[app.x\n",
		"5-crossref.toml": "[service.other]\napp = \"web\"\nport = 80\ntarget_port = \"metrics\"\n",
	})
	_, err := LoadManifests(dir, filepath.Join(dir, "missing.toml"))
	if err == nil {
		t.Fatal("no error")
	}
	rel := strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), "")
	want := strings.Join([]string{
		"2-again.toml:2:6: app.web: app \"web\" is defined twice (first in " + filepath.Join(dir, "1-apps.toml") + ":1:6)",
		"2-again.toml:5:10: service.web: service \"web\" is defined twice (first in " + filepath.Join(dir, "1-apps.toml") + ":5:10)",
		"3-bad.toml:2:12: app.db.replicas: expected an integer, got a string (\"1\")",
		"4-syntax.toml:1:7: syntax error: expected '.' or ']' to end table name, but got '\\n' instead",
		"5-crossref.toml:4:15: service.other.target_port: \"metrics\" is not a port of app \"web\" (it has http)",
		"missing.toml: stat: no such file or directory",
	}, "\n")
	want = strings.ReplaceAll(want, dir+string(filepath.Separator), "")
	if rel != want {
		t.Errorf("got:\n%s\nwant:\n%s", rel, want)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("errors.Is(err, fs.ErrNotExist) = false")
	}
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Errorf("errors.As(err, *FieldError) = false")
	}
}

func TestValidateWithoutPositions(t *testing.T) {
	// An API body: no defaults applied, zero values mean "default".
	m := &Manifest{
		Apps: map[string]*AppSpec{
			"ok":  {Containers: map[string]*ContainerSpec{"c": {Image: "x", Readiness: &Probe{TCP: true, Port: PortRef{Number: 80}}}}},
			"bad": {Replicas: ptr(-1), Containers: map[string]*ContainerSpec{"c": nil}},
			"nil": nil,
		},
		Services: map[string]*ServiceSpec{
			"ok":  {App: "ok", Port: 80},
			"bad": {App: "bad", Port: 80, TargetPort: PortRef{Number: 70000}, Type: "node-port", NodePort: 1},
		},
	}
	err := m.Validate()
	want := strings.Join([]string{
		"app.bad.replicas: must be >= 0",
		"app.bad.container.c: is empty",
		"app.nil: is empty",
		"service.bad.target_port: port 70000 is out of range 1-65535",
		"service.bad.node_port: 1 is out of range 30000-32767",
	}, "\n")
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
	if err := ValidateApp("ok", m.Apps["ok"]); err != nil {
		t.Errorf("ValidateApp(ok): %v", err)
	}
	if err := ValidateService("ok", m.Services["ok"]); err != nil {
		t.Errorf("ValidateService(ok): %v", err)
	}
	err = ValidateApp("Bad", &AppSpec{})
	want = "app.Bad: \"Bad\" is not a valid name (use lower-case letters, digits and '-', starting and ending with a letter or digit)\n" +
		"app.Bad.container: at least one container is required"
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
}

func TestFieldErrorFormat(t *testing.T) {
	tests := []struct {
		name string
		err  FieldError
		want string
	}{
		{"full", FieldError{File: "web.toml", Line: 7, Col: 12, Field: "app.web.container.http.memory", Msg: `"64MB" is not a size (use 64Mi)`},
			`web.toml:7:12: app.web.container.http.memory: "64MB" is not a size (use 64Mi)`},
		{"no position", FieldError{Field: "app.web.replicas", Msg: "must be >= 0"}, "app.web.replicas: must be >= 0"},
		{"file only", FieldError{File: "x.toml", Msg: "open: permission denied"}, "x.toml: open: permission denied"},
		{"no field", FieldError{File: "x.toml", Line: 1, Col: 3, Msg: "syntax error: x"}, "x.toml:1:3: syntax error: x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"web", true}, {"a", true}, {"0", true}, {"edge-proxy-2", true},
		{strings.Repeat("a", 63), true}, {strings.Repeat("a", 64), false},
		{"", false}, {"Web", false}, {"-web", false}, {"web-", false}, {"we_b", false}, {"we.b", false}, {"wéb", false},
	}
	for _, tt := range tests {
		if got := ValidName(tt.name); got != tt.ok {
			t.Errorf("ValidName(%q) = %v, want %v", tt.name, got, tt.ok)
		}
	}
}

func TestValidImage(t *testing.T) {
	tests := []struct {
		ref string
		ok  bool
	}{
		{"busybox", true}, {"busybox:1.36", true}, {"library/busybox:latest", true},
		{"registry.local:5000/echo:1.2", true}, {"localhost:5000/a/b/c", true}, {"127.0.0.1:5000/x:y", true},
		{"ghcr.io/org/my_app__x.y-z:v1.0-rc.1", true},
		{"x@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", true},
		{"", false}, {"Echo", false}, {"echo:", false}, {"echo::1", false}, {":1", false}, {"a b", false},
		{"echo@sha256:xyz", false}, {"/echo", false}, {"echo/", false}, {"echo:-x", false},
	}
	for _, tt := range tests {
		if got := validImage(tt.ref); got != tt.ok {
			t.Errorf("validImage(%q) = %v, want %v", tt.ref, got, tt.ok)
		}
	}
}

func TestResolvePort(t *testing.T) {
	c := ContainerSpec{Ports: map[string]int{"http": 8080}}
	tests := []struct {
		name string
		ref  PortRef
		want int
		ok   bool
	}{
		{"by name", PortRef{Name: "http"}, 8080, true},
		{"by number", PortRef{Number: 9000}, 9000, true},
		{"unknown name", PortRef{Name: "admin"}, 0, false},
		{"zero", PortRef{}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, ok := c.ResolvePort(tt.ref)
			if n != tt.want || ok != tt.ok {
				t.Errorf("ResolvePort(%v) = %d, %v; want %d, %v", tt.ref, n, ok, tt.want, tt.ok)
			}
			a := &AppSpec{Containers: map[string]*ContainerSpec{"a": {}, "b": &c}}
			n, ok = a.ResolvePort(tt.ref)
			if n != tt.want || ok != tt.ok {
				t.Errorf("AppSpec.ResolvePort(%v) = %d, %v; want %d, %v", tt.ref, n, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestSetDefaultsPerNode(t *testing.T) {
	a := &AppSpec{Mode: ModePerNode, Containers: map[string]*ContainerSpec{"c": {Image: "x"}}}
	a.SetDefaults()
	if a.Replicas != nil {
		t.Errorf("per-node app got replicas %d", *a.Replicas)
	}
	if *a.Update.MaxSurge != 0 || *a.Update.MaxUnavailable != 1 {
		t.Errorf("per-node update = surge %d, unavailable %d; want 0, 1", *a.Update.MaxSurge, *a.Update.MaxUnavailable)
	}
	before := mustJSON(t, a)
	a.SetDefaults()
	if after := mustJSON(t, a); after != before {
		t.Errorf("SetDefaults is not idempotent:\n%s\n%s", before, after)
	}
	if err := ValidateApp("agent", a); err != nil {
		t.Error(err)
	}
}

func TestPerNodeUpdateDefaults(t *testing.T) {
	// A per-node app defaults to max_surge 0, so max_unavailable = 0 leaves
	// the update no way to proceed; with or without defaults applied.
	src := "[app.agent]\nmode = \"per-node\"\n[app.agent.update]\nmax_unavailable = 0\n[app.agent.container.a]\nimage = \"a\"\n"
	_, err := ParseManifest("a.toml", []byte(src))
	want := "a.toml:3:1: app.agent.update: max_surge and max_unavailable cannot both be 0 (the update could never start)"
	if err == nil || err.Error() != want {
		t.Errorf("ParseManifest: got %v, want %s", err, want)
	}
	a := &AppSpec{Mode: ModePerNode, Update: &UpdateSpec{MaxUnavailable: ptr(0)}, Containers: map[string]*ContainerSpec{"a": {Image: "a"}}}
	if err := ValidateApp("agent", a); err == nil {
		t.Errorf("ValidateApp without defaults: no error")
	}
}
