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

func TestDefaultNodeConfig(t *testing.T) {
	c := DefaultNodeConfig()
	host, _ := os.Hostname()
	if c.NodeName != strings.ToLower(host) {
		t.Errorf("node_name = %q, want the hostname %q", c.NodeName, host)
	}
	if c.DataDir != "/var/lib/skiff" || c.RunDir != "/run/skiff" || c.APIAddr != "0.0.0.0:7443" ||
		c.GossipAddr != "0.0.0.0:7946" || c.ClusterCIDR != "10.88.0.0/16" || c.ServiceCIDR != "10.96.0.0/16" ||
		c.Bridge != "skiff0" || c.CgroupParent != "skiff" || c.MaxPods != 110 ||
		c.NodeGrace != Duration(10*time.Second) || c.Gossip.Profile != GossipEdge || c.AdvertiseAddr != "" ||
		!c.AllowUnconfined {
		t.Errorf("defaults differ from DESIGN.md: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
}

// The DESIGN.md example of the node config, verbatim.
const designNodeConfig = `node_name = "edge-01"              # default: the hostname
labels = { site = "shop-1" }
data_dir = "/var/lib/skiff"
run_dir = "/run/skiff"
advertise_addr = "10.0.0.5"        # this node's IP for gossip, API and pod routes
                                   # default: the address of the default route
api_addr = "0.0.0.0:7443"          # TLS API for agents and remote CLIs
gossip_addr = "0.0.0.0:7946"
servers = ["10.0.0.2:7443"]        # agents: where to join
token_file = "/etc/skiff/token"
cluster_cidr = "10.88.0.0/16"
service_cidr = "10.96.0.0/16"
bridge = "skiff0"
cgroup_parent = "skiff"
insecure_registries = ["registry.local:5000"]
reserved = { cpu = 0.1, memory = "64Mi" }

[gossip]                           # serf/memberlist timings
profile = "edge"                   # edge (tuned for small LANs) | lan | wan
`

func TestLoadNodeConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(file, []byte(designNodeConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := LoadNodeConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultNodeConfig()
	want.NodeName = "edge-01"
	want.Labels = map[string]string{"site": "shop-1"}
	want.AdvertiseAddr = "10.0.0.5"
	want.Servers = []string{"10.0.0.2:7443"}
	want.TokenFile = "/etc/skiff/token"
	want.InsecureRegistries = []string{"registry.local:5000"}
	want.Reserved = Reserved{CPU: 0.1, Memory: 64 << 20}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}

	// Keys left out keep their defaults; a table sets only its keys.
	partial := filepath.Join(dir, "partial.toml")
	if err := os.WriteFile(partial, []byte("max_pods = 50\nallow_unconfined = false\n[gossip]\nsuspicion_mult = 6\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err = LoadNodeConfig(partial)
	if err != nil {
		t.Fatal(err)
	}
	want = DefaultNodeConfig()
	want.MaxPods = 50
	want.AllowUnconfined = false
	want.Gossip.SuspicionMult = 6
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestLoadNodeConfigMissing(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "config.toml")
	_, err := LoadNodeConfig(missing)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("explicitly named missing file: err = %v, want fs.ErrNotExist", err)
	}
	// The default path may be missing.
	got, err := loadNodeConfig(missing, true)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, DefaultNodeConfig()) {
		t.Errorf("missing default file: got %+v, want the defaults", got)
	}
}

func TestNodeConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		toml string
		want string
	}{
		{"syntax", "node_name = \n", `config.toml:1:13: syntax error: expected value but found '\n' instead`},
		{"unknown key", "nodename = \"x\"\n[gossip]\nprofil = \"lan\"\n",
			"config.toml:1:1: nodename: unknown key (did you mean \"node_name\"?)\n" +
				"config.toml:3:1: gossip.profil: unknown key (did you mean \"profile\"?)"},
		{"wrong types", "max_pods = \"10\"\nservers = \"10.0.0.2:7443\"\nreserved = { cpu = \"1\" }\n",
			"config.toml:1:12: max_pods: expected an integer, got a string (\"10\")\n" +
				"config.toml:2:11: servers: expected an array, got a string (\"10.0.0.2:7443\")\n" +
				"config.toml:3:20: reserved.cpu: expected a number, got a string (\"1\")"},
		{"allow_unconfined not a bool", "allow_unconfined = \"no\"\n",
			"config.toml:1:20: allow_unconfined: expected a boolean, got a string (\"no\")"},
		{"cidrs", "cluster_cidr = \"10.88.0.1/16\"\nservice_cidr = \"10.96.0.0/31\"\n",
			"config.toml:1:16: cluster_cidr: \"10.88.0.1/16\" has host bits set (use 10.88.0.0/16)\n" +
				"config.toml:2:16: service_cidr: \"10.96.0.0/31\" is too small (at most /30)"},
		{"cidr forms", "cluster_cidr = \"10.88.0.0/25\"\nservice_cidr = \"fd00::/64\"\n",
			"config.toml:1:16: cluster_cidr: \"10.88.0.0/25\" is too small (at most /24)\n" +
				"config.toml:2:16: service_cidr: \"fd00::/64\" is not an IPv4 network"},
		{"overlap", "cluster_cidr = \"10.0.0.0/8\"\nservice_cidr = \"10.96.0.0/16\"\n",
			"config.toml:2:16: service_cidr: 10.96.0.0/16 overlaps cluster_cidr 10.0.0.0/8"},
		{"not a cidr", "cluster_cidr = \"10.88.0.0\"\n", `config.toml:1:16: cluster_cidr: "10.88.0.0" is not a CIDR like "10.88.0.0/16"`},
		{"addresses", "advertise_addr = \"10.0.0.5:7946\"\napi_addr = \"7443\"\ngossip_addr = \"0.0.0.0:99999\"\nservers = [\"10.0.0.2\", \"server-1.local:7443\", \"bad host:1\"]\n",
			"config.toml:1:18: advertise_addr: \"10.0.0.5:7946\" is not an IPv4 address of this node\n" +
				"config.toml:2:12: api_addr: \"7443\" is not an address like \"0.0.0.0:7443\"\n" +
				"config.toml:3:15: gossip_addr: \"99999\" is not a port number\n" +
				"config.toml:4:12: servers[0]: \"10.0.0.2\" is not an address like \"10.0.0.2:7443\"\n" +
				"config.toml:4:47: servers[2]: \"bad host\" is not a host name or IP address"},
		{"gossip", "[gossip]\nprofile = \"lan \"\nprobe_interval = \"1x\"\nsuspicion_mult = -1\n",
			"config.toml:2:11: gossip.profile: \"lan \" is not a gossip profile (use edge, lan or wan)\n" +
				"config.toml:3:18: gossip.probe_interval: \"1x\" is not a duration (use 500ms, 2s, 1m)\n" +
				"config.toml:4:18: gossip.suspicion_mult: must be >= 0"},
		{"paths and names", "node_name = \"Edge_01\"\ndata_dir = \"var/lib/skiff\"\nrun_dir = \"\"\nbridge = \"a-very-long-bridge\"\ncgroup_parent = \"/skiff\"\ntoken_file = \"token\"\n",
			"config.toml:1:13: node_name: \"Edge_01\" is not a valid node name (lower-case letters, digits, '-' and '.')\n" +
				"config.toml:2:12: data_dir: \"var/lib/skiff\" is not an absolute path\n" +
				"config.toml:3:11: run_dir: must not be empty\n" +
				"config.toml:4:10: bridge: \"a-very-long-bridge\" is not a network interface name (at most 15 characters, no '/', ':' or spaces)\n" +
				"config.toml:5:17: cgroup_parent: \"/skiff\" is not a relative cgroup path like \"skiff\"\n" +
				"config.toml:6:14: token_file: \"token\" is not an absolute path"},
		{"limits", "max_pods = 500\nnode_grace = \"0s\"\nreserved = { cpu = -1, memory = \"1GB\" }\nlabels = { \"x y\" = \"1\" }\ninsecure_registries = [\"registry.local\", \"reg:abc\"]\n",
			"config.toml:1:12: max_pods: must be 1-253 (a node's pods share a /24)\n" +
				"config.toml:2:14: node_grace: must be > 0\n" +
				"config.toml:3:20: reserved.cpu: must be >= 0\n" +
				"config.toml:3:33: reserved.memory: \"1GB\" is not a size (use 1Gi)\n" +
				"config.toml:4:12: labels.\"x y\": \"x y\" is not a valid label key\n" +
				"config.toml:5:42: insecure_registries[1]: \"abc\" is not a port number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseNodeConfig("config.toml", []byte(tt.toml))
			if err == nil {
				t.Fatal("no error")
			}
			if err.Error() != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", err, tt.want)
			}
		})
	}
}
