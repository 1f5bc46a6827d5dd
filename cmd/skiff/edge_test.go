package main

import (
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/skiff-edge/skiff/orchestrator/nettest"
)

// TestVersion: skiff version prints the version, the commit and os/arch.
func TestVersion(t *testing.T) {
	out := must(t, "unix:///nonexistent", "version")
	for _, want := range []string{"skiff dev\n", "commit ", runtime.GOOS + "/" + runtime.GOARCH + " go"} {
		if !strings.Contains(out, want) {
			t.Errorf("skiff version printed %q, want %q in it", out, want)
		}
	}
}

// TestClusterModeFromConfig: listen_tcp = true in the node config serves
// the TLS API (a unit reading /etc/skiff/config.toml needs no flag), and
// --listen-tcp=false overrides it; metrics_addr serves /metrics in plain
// HTTP, with the controllers' queue depths, parsed by Prometheus's parser.
func TestClusterModeFromConfig(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flags []string
		tcp   bool
	}{
		{"config", nil, true},
		{"flag overrides", []string{"--listen-tcp=false"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api, gossip, metrics := nettest.Addr(t, "127.0.0.1"), nettest.Addr(t, "127.0.0.1"), nettest.Addr(t, "127.0.0.1")
			cfg := writeFile(t, t.TempDir(), "config.toml", fmt.Sprintf(
				"node_name = \"cfg-tcp\"\nadvertise_addr = \"127.0.0.1\"\nlisten_tcp = true\napi_addr = %q\ngossip_addr = %q\nmetrics_addr = %q\n",
				api, gossip, metrics))
			startServerArgs(t, append([]string{"--config", cfg}, tc.flags...)...)
			// The TCP listener, if any, is up before the unix socket serves.
			c, err := net.DialTimeout("tcp", api, 5*time.Second)
			if c != nil {
				c.Close()
			}
			if tc.tcp != (err == nil) {
				t.Fatalf("dial the TLS API at %s: %v (want it listening: %v)", api, err, tc.tcp)
			}
			// The controllers register their queue after the API serves.
			deadline := time.Now().Add(20 * time.Second)
			for {
				resp, err := http.Get("http://" + metrics + "/metrics")
				if err != nil {
					t.Fatal(err)
				}
				p := expfmt.NewTextParser(model.LegacyValidation)
				fams, err := p.TextToMetricFamilies(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatalf("parse metrics_addr's /metrics: %v", err)
				}
				if fams["skiff_controller_queue_depth"] != nil && fams["skiff_store_revision"] != nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no skiff_controller_queue_depth on metrics_addr in 20s: %v", keys(fams))
				}
				time.Sleep(50 * time.Millisecond) // poll interval
			}
		})
	}
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
