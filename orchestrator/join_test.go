package orchestrator

import "testing"

func TestNextServer(t *testing.T) {
	servers := []string{"10.0.0.1:7443", "10.0.0.2:7443", "10.0.0.3:7443"}
	tests := []struct {
		name    string
		cur     string
		servers []string
		want    string
	}{
		{name: "none", cur: "10.0.0.1:7443", servers: nil, want: ""},
		{name: "only the current one", cur: "10.0.0.1:7443", servers: servers[:1], want: "10.0.0.1:7443"},
		{name: "the next one", cur: "10.0.0.1:7443", servers: servers, want: "10.0.0.2:7443"},
		{name: "wraps around", cur: "10.0.0.3:7443", servers: servers, want: "10.0.0.1:7443"},
		{name: "current gone from the gossip", cur: "10.0.0.9:7443", servers: servers, want: "10.0.0.1:7443"},
		{name: "joined through a host name", cur: "edge-server:7443", servers: servers[1:], want: "10.0.0.2:7443"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextServer(tt.cur, tt.servers); got != tt.want {
				t.Errorf("nextServer(%q, %v) = %q, want %q", tt.cur, tt.servers, got, tt.want)
			}
		})
	}
}
