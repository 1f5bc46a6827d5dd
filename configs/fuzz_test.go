package configs

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// FuzzParseManifest feeds arbitrary text to ParseManifest. It must never
// panic; every error must carry a position; and whatever parses without
// error must survive a JSON round trip (the way apply sends it to the
// server) unchanged and still valid.
func FuzzParseManifest(f *testing.F) {
	seeds, err := filepath.Glob("testdata/*/*.toml")
	if err != nil {
		f.Fatal(err)
	}
	seeds = append(seeds, "testdata/design_verbatim.toml")
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkIndexed(t, data)
		m, err := ParseManifest("fuzz.toml", data)
		if err != nil {
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error is not a non-empty ErrorList: %T %v", err, err)
			}
			for _, fe := range list {
				if fe.Line < 1 || fe.Col < 1 || fe.File != "fuzz.toml" {
					t.Fatalf("error without a position: %q", fe.Error())
				}
			}
			return
		}
		checkRoundTrip(t, m)
	})
}

// checkRoundTrip asserts that m, valid, survives JSON unchanged and valid.
func checkRoundTrip(t *testing.T, m *Manifest) {
	t.Helper()
	{
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		var back Manifest
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("unmarshal %s: %v", b, err)
		}
		if err := back.Validate(); err != nil {
			t.Fatalf("valid manifest invalid after a JSON round trip:\n%s\n%v", b, err)
		}
		b2, err := json.Marshal(&back)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, b2) {
			t.Fatalf("JSON round trip changed the manifest:\n%s\n%s", b, b2)
		}
	}
}

// checkIndexed asserts that the position scanner finds every key that the
// TOML library finds, outside arrays.
func checkIndexed(t *testing.T, data []byte) {
	var tree map[string]any
	md, err := toml.Decode(string(data), &tree)
	if err != nil {
		return
	}
	ix := indexPositions(data)
keys:
	for _, k := range md.Keys() {
		for n := 1; n < len(k); n++ {
			if md.Type(k[:n]...) == "Array" {
				continue keys
			}
		}
		if _, ok := ix[strings.Join(k, pathSep)]; !ok {
			t.Fatalf("key %q not indexed", []string(k))
		}
	}
}

// FuzzManifestValues fills a manifest's fields with arbitrary values through
// the TOML encoder, so that most inputs are valid TOML and reach the
// validation; it checks the same as FuzzParseManifest.
func FuzzManifestValues(f *testing.F) {
	f.Add("web", int64(3), "replicas", "always", "10s", "http", "registry.local:5000/echo:1.2", "http", int64(8080), int64(80),
		0.25, "64Mi", "cache", "/cache", "empty", "", "/healthz", "http", "2s", int64(1), int64(0), int64(2), int64(8), 0.7, 200.0,
		"svc", int64(80), "http", "node-port", int64(30080), "", "10.96.0.10", "site", "shop-1", "GREETING", "hello")
	f.Add("a", int64(0), "per-node", "never", "1m", "c", "busybox", "p", int64(1), int64(0),
		0.0, "0", "v", "/v", "host", "/srv/v", "", "1", "1s", int64(0), int64(1), int64(0), int64(1), 0.0, 1.0,
		"s", int64(65535), "1", "load-balancer", int64(0), "192.168.1.1", "", "k", "", "_", "")
	f.Fuzz(func(t *testing.T, app string, replicas int64, mode, restart, grace, cname, image, pname string, port, hostPort int64,
		cpu float64, memory, vname, mountPath, vtype, vpath, httpGet, probePort, period string, surge, unavailable, minR, maxR int64,
		targetCPU, targetRPS float64, svc string, svcPort int64, targetPort, stype string, nodePort int64, externalIP, clusterIP,
		labelKey, labelValue, envKey, envValue string) {
		readiness := map[string]any{"period": period}
		if httpGet != "" {
			readiness["http_get"] = httpGet
		} else {
			readiness["tcp"] = true
		}
		if n, err := strconv.ParseInt(probePort, 10, 64); err == nil {
			readiness["port"] = n
		} else {
			readiness["port"] = probePort
		}
		volume := map[string]any{"type": vtype}
		if vpath != "" {
			volume["path"] = vpath
		}
		a := map[string]any{
			"restart":           restart,
			"termination_grace": grace,
			"node_selector":     map[string]any{labelKey: labelValue},
			"container": map[string]any{cname: map[string]any{
				"image":      image,
				"env":        map[string]any{envKey: envValue},
				"ports":      map[string]any{pname: port},
				"host_ports": map[string]any{pname: hostPort},
				"cpu":        cpu,
				"memory":     memory,
				"mounts":     map[string]any{vname: mountPath},
				"readiness":  readiness,
			}},
			"volume":    map[string]any{vname: volume},
			"update":    map[string]any{"max_surge": surge, "max_unavailable": unavailable},
			"autoscale": map[string]any{"min": minR, "max": maxR, "target_cpu": targetCPU, "target_rps": targetRPS},
		}
		if mode != "replicas" {
			a["mode"] = mode
		}
		if mode != "per-node" {
			a["replicas"] = replicas
		}
		if minR == 0 {
			delete(a, "autoscale")
		}
		if hostPort == 0 {
			delete(a["container"].(map[string]any)[cname].(map[string]any), "host_ports")
		}
		s := map[string]any{"app": app, "port": svcPort, "type": stype, "node_port": nodePort}
		if n, err := strconv.ParseInt(targetPort, 10, 64); err == nil {
			s["target_port"] = n
		} else {
			s["target_port"] = targetPort
		}
		if externalIP != "" {
			s["external_ip"] = externalIP
		}
		if clusterIP != "" {
			s["cluster_ip"] = clusterIP
		}
		var buf bytes.Buffer
		if err := toml.NewEncoder(&buf).Encode(map[string]any{
			"app":     map[string]any{app: a},
			"service": map[string]any{svc: s},
		}); err != nil {
			return // not representable in TOML (NaN keys and the like)
		}
		m, err := ParseManifest("fuzz.toml", buf.Bytes())
		if err != nil {
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("%T %v", err, err)
			}
			for _, fe := range list {
				if fe.Line < 1 {
					t.Fatalf("error without a position: %q\n%s", fe.Error(), buf.Bytes())
				}
			}
			return
		}
		checkRoundTrip(t, m)
	})
}
