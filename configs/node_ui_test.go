package configs

import (
	"strings"
	"testing"
)

func TestUIAddrLoopbackOnly(t *testing.T) {
	tests := []struct {
		name, addr, err string
	}{
		{"loopback", `"127.0.0.1:7480"`, ""},
		{"loopback v6", `"[::1]:7480"`, ""},
		{"any address", `"0.0.0.0:7480"`, "ui_addr: \"0.0.0.0:7480\" is not a loopback address"},
		{"LAN address", `"192.168.1.5:7480"`, "is not a loopback address"},
		{"no host", `":7480"`, "is not a loopback address"},
		{"hostname", `"localhost:7480"`, "is not a loopback address"},
		{"no port", `"127.0.0.1"`, "ui_addr: \"127.0.0.1\" is not an address"},
		{"bad port", `"127.0.0.1:x"`, "is not a port number"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseNodeConfig("config.toml", []byte("ui_addr = "+tc.addr+"\n"))
			if tc.err == "" {
				if err != nil || c.UIAddr == "" {
					t.Fatalf("ui_addr = %s: %v", tc.addr, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "config.toml:1:") {
				t.Fatalf("ui_addr = %s: error %v, want config.toml:1:...%q", tc.addr, err, tc.err)
			}
		})
	}
	if c := DefaultNodeConfig(); c.UIAddr != "" {
		t.Errorf("ui_addr is on by default: %q", c.UIAddr)
	}
}
