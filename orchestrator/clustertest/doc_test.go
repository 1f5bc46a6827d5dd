// Package clustertest builds a skiff cluster of N nodes on one machine for
// end-to-end tests: each node is a network namespace with its own address
// on a test bridge, running a real `skiff` process with its own config,
// data and run dirs.
//
// It is test code only: every file is a _test.go file (the harness in
// harness*_test.go, the tests beside it), so nothing of it is built into a
// binary and no other package can import it. Run it with
// `go test ./orchestrator/clustertest/`.
//
// # Topology
//
// The harness makes a "switch" netns (skt-<id>-sw) holding a bridge, and per
// node a netns skt-<id>-n<i> whose eth0 is one end of a veth pair; the other
// end (n<i>) sits on the switch's bridge. Node i has 10.99.<r>.<i+1>/24 on
// eth0; every link, route and iptables rule of the test lives in these
// namespaces, so the host's own network is never touched. Cut(i) takes the
// switch side of node i's veth down (the node is cut off, its processes keep
// running); Heal(i) brings it up.
//
// Node 0 runs `skiff server --agent`, nodes 1..N-1 run `skiff agent --server
// <node0>:7443 --token <token>`, the token from `skiff token --data-dir
// <node0 data dir>`. Each process is started with `nsenter --net=/run/netns/NODE`
// (not `ip netns exec`, which remounts /sys and hides the cgroup tree), logs
// to <dir>/n<i>.log, and reads <dir>/n<i>/config.toml: node_name (the netns
// name), data_dir, run_dir, advertise_addr, api_addr and gossip_addr on the
// node's address, its own bridge name and cgroup parent, the cluster's
// cluster_cidr and service_cidr, node_grace and the gossip profile from
// Options. The demo image archive (examples/demo as localhost/skiff-demo:1)
// is dropped in every node's <data_dir>/images/ before start, so nothing is
// pulled.
//
// # Use
//
//	c := New(t, Options{Nodes: 3})
//	c.Apply(DemoManifest(6))                         // skiff apply against node 0
//	pods := c.WaitAppReady("web", 6, time.Minute)    // ready, and listed as endpoints
//	h := Hit(c.Nodes[1].NetnsPath(), c.VIP("web"), 30)         // from node 1
//	h = Hit(c.PodNetns(1, pods[0].Name), c.VIP("web"), 30)     // from a pod on node 1
//	c.Kill(2); c.Cut(2)                              // lose node 2
//	c.Heal(2); c.Start(2)                            // and bring it back
//
// Other helpers: Restart, Stop, StartAgent (a token of the test's choice)
// and WaitExit, Exec (a command in a node's netns), CLI (the skiff CLI on a
// node's socket), Client (orchestrator/client on a node's socket; agents
// may have none, so cluster-wide reads go to node 0), Token, WaitFor and
// Poll, WaitNodeReady, Pods and ReadyPods, IptablesNAT and LBHoldsAny (a
// node's nat table), AppProcs (a container's processes counted in the
// node's cgroup parent), GetIn (one request from any netns).
//
// The benchmarks of this package (BenchmarkFailover, BenchmarkAgentRSS)
// are run by bench/failover.sh; figures in bench/failover.md.
//
// skiff is built once per test binary (go build ./cmd/skiff into a temp
// dir). New registers the clean-up with t.Cleanup: every node gets SIGTERM,
// then SIGKILL after a few seconds, then `skiff agent --cleanup` in its
// netns; then the harness checks that no process is left in the node's
// cgroup parent, no cgroup directory under it and no mount under the
// cluster's dir, removes the namespaces and the dir, and on failure prints
// the tail of every node's log (the logs are kept under $TMPDIR).
//
// # Several servers (issue 12)
//
// ha_harness_test.go builds on Cluster: NewHA(t, HAOptions{Servers: 3,
// Witnesses, Spares, Agents}) starts `skiff server --listen-tcp` on the
// first node, then each other server with `--server FIRST:7443` (and
// `--witness` for witnesses) and a token of role server in its token_file,
// then the agents. Faults: KillServer (SIGKILL) and RestartServer,
// Partition(groups...) (iptables DROP between the groups inside each
// member's netns, in chain SKT-HA-PART) and HealPartitions, Cut/Heal (link
// down). Leader, WaitLeader, WaitKnowsLeader probe each server with a
// consistent read of a missing config (404 from the ready leader, 503
// not_leader with Skiff-Leader, or no_quorum). Raw does one call on a
// server's socket and says whether it was surely never sent.
//
// ha_model_test.go is a porcupine model of configs with revisions (create,
// put with CAS revision, consistent get) and a workload whose clients
// record every call with its call and return time; a not_leader answer or
// an unsent request counts as not applied, a timeout, a cut connection or a
// no_quorum answer as may-have-applied (return time infinite). The tests:
// TestHAModel (the checker refuses bad histories), TestHALinearizableSingle
// (one server, kill -9 three times), TestHALinearizable (3 servers, 20
// faults), TestHACluster (failover, partition 2|1, add/remove, snapshot
// restore on one cluster), TestHAWitness; BenchmarkHA is run by
// bench/ha.sh (figures in bench/ha.md).
//
// Everything needs root, nsenter, ip (iproute2), iptables-save and go.
package clustertest
