package configs

import (
	"bytes"
	"encoding"
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// nodeKeyDoc is the comment and, for a key whose default is empty or
// depends on the machine, the example value DefaultNodeConfigFile writes
// for a key of the node config. Every key must have one: the test
// TestDefaultNodeConfigFile fails on a key without.
type nodeKeyDoc struct {
	help    string
	example string // TOML value; "" writes the default
}

var nodeKeyDocs = map[string]nodeKeyDoc{
	"node_name":                {"This node's name (lower-case letters, digits, '-' and '.'). Default: the hostname.", `"edge-01"`},
	"labels":                   {"Labels; apps pick nodes with node_selector. Default: none.", `{ site = "shop-1" }`},
	"data_dir":                 {"State: the store, pki/, serf/, images, pod directories.", ""},
	"run_dir":                  {"Runtime: the API socket skiff.sock, container state, network namespaces.", ""},
	"advertise_addr":           {"This node's IPv4 for gossip, API and pod routes. Default: the address of the default route.", `"10.0.0.5"`},
	"api_addr":                 {"TLS API for agents and remote CLIs (servers in cluster mode).", ""},
	"gossip_addr":              {"serf gossip, TCP and UDP (cluster mode).", ""},
	"servers":                  {"Agents: the servers to join and fail over to; servers: the cluster to join as another server (docs/ha.md). Default: none.", `["10.0.0.2:7443"]`},
	"token_file":               {"Agents: a 0600 file holding the join token (`skiff token` on a server), read only for the first join; a joining server: a token of role server. Default: none.", `"/etc/skiff/token"`},
	"witness":                  {"Servers: run as a witness (as --witness): a raft voter that runs no controllers and serves no writes. Default: false.", `false`},
	"server_remove_after":      {"Servers: how long a failed server stays a raft voter before the leader removes it. Default: 5m.", `"5m"`},
	"host_volume_paths":        {"Path prefixes host volumes may use. Default: none (every host volume is refused).", `["/srv/"]`},
	"cluster_cidr":             {"Pod addresses; each node gets a /24.", ""},
	"service_cidr":             {"Service virtual IPs; must not overlap cluster_cidr.", ""},
	"bridge":                   {"The pods' bridge on this node.", ""},
	"cgroup_parent":            {"The cgroup under which pods run.", ""},
	"insecure_registries":      {"Registries pulled from over plain HTTP (loopback ones always are). Default: none.", `["registry.local:5000"]`},
	"max_pods":                 {"Pods on this node, at most 253 (a /24).", ""},
	"node_grace":               {"How long a failed node's pods wait before they are replaced elsewhere.", ""},
	"listen_tcp":               {"Cluster mode (servers): the TLS API on api_addr and gossip on gossip_addr. --listen-tcp overrides it.", ""},
	"metrics_addr":             {"Also serve /metrics over plain HTTP, WITHOUT authentication, on this address. Default: off (/metrics is on the API, with its authentication).", `"127.0.0.1:9090"`},
	"ui_addr":                  {"Also serve the web console (only it) over plain HTTP on this loopback address. Default: off (the console is at /ui/ of the TLS API).", `"127.0.0.1:8080"`},
	"allow_unconfined":         {`Whether containers with seccomp = "unconfined" may run here.`, ""},
	"reserved":                 {"What the node keeps back from pods. Default: nothing.", ""},
	"reserved.cpu":             {"Cores.", "0.1"},
	"reserved.memory":          {"Bytes, with a binary suffix.", `"64Mi"`},
	"gossip":                   {"serf/memberlist timings.", ""},
	"gossip.profile":           {"edge (fast failure detection on small LANs), lan or wan.", ""},
	"gossip.probe_interval":    {"Overrides the profile's probe interval. Default: the profile's.", `"1s"`},
	"gossip.suspicion_mult":    {"Overrides the profile's suspicion multiplier. Default: the profile's.", "4"},
	"images":                   {"What unpacking one image layer may take of the node.", ""},
	"images.max_layer_bytes":   {"The largest layer, uncompressed.", ""},
	"images.max_layer_entries": {"The most files, directories and links in one layer.", ""},
	"images.min_free_bytes":    {"Free space that unpacking leaves on data_dir's file system.", ""},
	"dns":                      {"The resolver each agent runs for its pods (service names, everything else forwarded).", ""},
	"dns.disabled":             {"No resolver: pods keep their images' /etc/resolv.conf.", ""},
	"dns.domain":               {"The domain of service names (web.skiff); pods search it.", ""},
	"dns.upstreams":            {"Where every other name goes, \"IP\" or \"IP:PORT\". Default: the nameservers of resolv_conf.", `["192.168.1.1"]`},
	"dns.resolv_conf":          {"Read for the upstreams when upstreams is empty.", ""},
	"dns.port":                 {"The resolver's UDP and TCP port on the bridge's address (pods always ask 53; another is for tests).", ""},
	"dns.cache_size":           {"Upstream answers kept (each until its TTL, at most 60 s).", ""},
	"lb":                       {"Servers: the LAN addresses load-balancer services may take.", ""},
	"lb.pools":                 {"Ranges or CIDRs of IPv4 addresses; a load-balancer service without address gets the first free one. Default: none (no service may have an address).", `["192.168.1.240-192.168.1.250"]`},
}

// DefaultNodeConfigFile returns the node config file that packages install
// as /etc/skiff/config.toml: every key of NodeConfig, commented out, with
// its default (or an example where the default is empty or the machine's)
// and a line saying what it is for. Uncommented whole, it decodes; it is
// generated from NodeConfig's fields and DefaultNodeConfig so that it
// cannot drift from them (TestDefaultNodeConfigFile).
func DefaultNodeConfigFile() []byte {
	var b bytes.Buffer
	b.WriteString("# skiff node config. Every key has a default: this file, all commented\n")
	b.WriteString("# out, changes nothing. Uncomment a line to set a key; flags of the same\n")
	b.WriteString("# name (--node-name, --data-dir, ...) override it. Reference:\n")
	b.WriteString("# https://github.com/skiff-edge/skiff/blob/main/docs/config.md\n")
	def := DefaultNodeConfig()
	v := reflect.ValueOf(def)
	// Scalars first: a key after a [table] header would belong to it.
	var tables []reflect.StructField
	for _, f := range reflect.VisibleFields(v.Type()) {
		key := tomlKey(f)
		if key == "" {
			continue
		}
		if f.Type.Kind() == reflect.Struct && !isText(f.Type) {
			tables = append(tables, f)
			continue
		}
		writeKey(&b, key, key, v.FieldByIndex(f.Index))
	}
	for _, f := range tables {
		key := tomlKey(f)
		fmt.Fprintf(&b, "\n# %s\n# [%s]\n", nodeKeyDocs[key].help, key)
		tv := v.FieldByIndex(f.Index)
		for _, sf := range reflect.VisibleFields(f.Type) {
			if k := tomlKey(sf); k != "" {
				writeKey(&b, key+"."+k, k, tv.FieldByIndex(sf.Index))
			}
		}
	}
	return b.Bytes()
}

// writeKey writes one commented key: its help line and "# key = value".
func writeKey(b *bytes.Buffer, docKey, key string, v reflect.Value) {
	d := nodeKeyDocs[docKey]
	val := d.example
	if val == "" {
		val = tomlValue(v)
	}
	fmt.Fprintf(b, "\n# %s\n# %s = %s\n", d.help, key, val)
}

// tomlKey is a field's TOML key, or "" for a field not in the file.
func tomlKey(f reflect.StructField) string {
	tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if !f.IsExported() || tag == "-" {
		return ""
	}
	return tag
}

var textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()

func isText(t reflect.Type) bool { return t.Implements(textMarshaler) }

// tomlValue writes a default value as TOML; only the kinds NodeConfig's
// keys with a non-empty default have.
func tomlValue(v reflect.Value) string {
	if isText(v.Type()) {
		t, _ := v.Interface().(encoding.TextMarshaler).MarshalText()
		return strconv.Quote(string(t))
	}
	switch v.Kind() {
	case reflect.String:
		return strconv.Quote(v.String())
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Int, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	}
	panic(fmt.Sprintf("configs: no TOML form for a default of kind %s", v.Kind()))
}
