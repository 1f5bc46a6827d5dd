package cluster

import (
	"errors"
	"log/slog"
	"maps"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	valid := func() Config {
		c := DefaultConfig()
		c.NodeName = "n1"
		c.EncryptKey = NewKey()
		return c
	}
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string
	}{
		{name: "defaults with a key", mod: func(*Config) {}},
		{name: "keyring file only, missing", mod: func(c *Config) {
			c.EncryptKey = nil
			c.KeyringFile = filepath.Join(t.TempDir(), "nope")
		}, wantErr: "keyring file cannot be read"},
		{name: "no key at all", mod: func(c *Config) { c.EncryptKey = nil }, wantErr: "a gossip key is required"},
		{name: "short key", mod: func(c *Config) { c.EncryptKey = make([]byte, 16) }, wantErr: "16 bytes, want 32"},
		{name: "empty name", mod: func(c *Config) { c.NodeName = "" }, wantErr: "node name is empty"},
		{name: "bind without port", mod: func(c *Config) { c.BindAddr = "127.0.0.1" }, wantErr: "bind address"},
		{name: "bind hostname", mod: func(c *Config) { c.BindAddr = "example.com:7946" }, wantErr: "not an IP"},
		{name: "advertise ip", mod: func(c *Config) { c.AdvertiseAddr = "10.0.0.5" }},
		{name: "advertise ip:port", mod: func(c *Config) { c.AdvertiseAddr = "10.0.0.5:8000" }},
		{name: "advertise unspecified", mod: func(c *Config) { c.AdvertiseAddr = "0.0.0.0:7946" }, wantErr: "unspecified"},
		{name: "bad profile", mod: func(c *Config) { c.Profile = "fast" }, wantErr: `profile "fast"`},
		{name: "tiny probe interval", mod: func(c *Config) { c.ProbeInterval = time.Millisecond }, wantErr: "probe interval"},
		{name: "negative suspicion", mod: func(c *Config) { c.SuspicionMult = -1 }, wantErr: "suspicion"},
		{name: "bad role", mod: func(c *Config) { c.Tags.Role = "boss" }, wantErr: "role tag"},
		{name: "bad api", mod: func(c *Config) { c.Tags.APIAddr = "10.0.0.5" }, wantErr: "api tag"},
		{name: "bad ip", mod: func(c *Config) { c.Tags.IP = "ten" }, wantErr: "ip tag"},
		{name: "bad cidr", mod: func(c *Config) { c.Tags.PodCIDR = "10.88.1.0" }, wantErr: "pod_cidr"},
		{name: "labels too large", mod: func(c *Config) {
			c.Tags.Labels = map[string]string{"a": strings.Repeat("x", 300), "b": strings.Repeat("y", 300)}
		}, wantErr: "serf allows 512"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.mod(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want ErrInvalidConfig with %q", err, tt.wantErr)
			}
		})
	}
}

func TestTags(t *testing.T) {
	in := Tags{Role: RoleAgent, APIAddr: "10.0.0.5:7443", IP: "10.0.0.5", PodCIDR: "10.88.3.0/24",
		Labels: map[string]string{"site": "shop-1", "role": "till"}}
	m := in.Map()
	if m["role"] != "agent" || m["label.role"] != "till" || m["label.site"] != "shop-1" || m["pod_cidr"] != "10.88.3.0/24" {
		t.Errorf("map %v", m)
	}
	out := TagsFromMap(m)
	if out.Role != in.Role || out.APIAddr != in.APIAddr || out.IP != in.IP || out.PodCIDR != in.PodCIDR || !maps.Equal(out.Labels, in.Labels) {
		t.Errorf("round trip %+v", out)
	}
	if n := in.Size(); n < 60 || n > 120 {
		t.Errorf("size %d", n)
	}

	big := Tags{Role: RoleAgent, Labels: map[string]string{"k": strings.Repeat("v", 600)}}
	if err := big.Validate(); !errors.Is(err, ErrTagsTooLarge) {
		t.Errorf("600-byte label: %v", err)
	}
}

func TestSetTagsTooLarge(t *testing.T) {
	m := startMember(t, testConfig(t, "n", NewKey()))
	err := m.SetTags(Tags{Role: RoleAgent, Labels: map[string]string{"k": strings.Repeat("v", 600)}})
	if !errors.Is(err, ErrTagsTooLarge) {
		t.Fatalf("err = %v, want ErrTagsTooLarge", err)
	}
	if m.Tags().Labels != nil {
		t.Errorf("tags changed after a refused SetTags")
	}
}

func TestParseLevel(t *testing.T) {
	tests := []struct {
		line string
		want slog.Level
	}{
		{"[ERR] memberlist: failed to receive", slog.LevelError},
		{"[WARN] serf: Shutdown without a Leave", slog.LevelWarn},
		{"[INFO] serf: EventMemberJoin: n1 127.0.0.1", slog.LevelInfo},
		{"[INFO] memberlist: Suspect n2 has failed", slog.LevelDebug},
		{"[DEBUG] memberlist: Initiating push/pull sync", slog.LevelDebug},
		{"no prefix", slog.LevelInfo},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			if got, _ := parseLevel(tt.line); got != tt.want {
				t.Errorf("level %v, want %v", got, tt.want)
			}
		})
	}
}

func TestProfiles(t *testing.T) {
	lan := serfConfig(ProfileLAN).MemberlistConfig
	edge := serfConfig(ProfileEdge).MemberlistConfig
	if lan.ProbeInterval != time.Second || lan.SuspicionMult != 4 {
		t.Errorf("lan is not memberlist's default: %s ×%d", lan.ProbeInterval, lan.SuspicionMult)
	}
	if edge.ProbeInterval != 200*time.Millisecond || edge.SuspicionMult != 2 || edge.ProbeTimeout >= edge.ProbeInterval {
		t.Errorf("edge: %s/%s ×%d", edge.ProbeInterval, edge.ProbeTimeout, edge.SuspicionMult)
	}
	applyOverrides(edge, 50*time.Millisecond, 3)
	if edge.ProbeInterval != 50*time.Millisecond || edge.ProbeTimeout >= 50*time.Millisecond || edge.SuspicionMult != 3 {
		t.Errorf("overrides: %s/%s ×%d", edge.ProbeInterval, edge.ProbeTimeout, edge.SuspicionMult)
	}
}
