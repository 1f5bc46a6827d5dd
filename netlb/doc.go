// Package netlb gives pods their network and turns services into kernel load
// balancing on one node, the way kube-proxy's iptables mode does.
//
// It knows a pod only by its name, its network namespace path and its IP. A
// [Network] owns, in the calling process's network namespace (the node):
//
//   - the node bridge (Config.Bridge, "skiff0" by default) with the first
//     address of the node's pod CIDR as the pods' gateway;
//   - one sandbox per pod: a named netns bind-mounted under
//     <RunDir>/netns/<pod>, a veth pair whose host end sits on the bridge
//     (hairpin on) and whose pod end is eth0 with the pod's IP, a default
//     route via the gateway and lo up;
//   - IPAM persisted under <StateDir>/ipam (one file per IP, created with
//     O_EXCL, so an IP is never handed out twice, even across restarts);
//   - host-gw routes to other nodes' pod CIDRs ([Network.SetPeers]), tagged
//     with their own route protocol number so that they are told apart;
//   - iptables chains named SKIFF-* in the nat and filter tables, written by
//     [Network.Sync] from the desired services and endpoints in one
//     iptables-restore --noflush, plus jump rules from built-in chains that
//     are ensured one by one with go-iptables.
//
// [Network.Cleanup] removes all of the above and nothing else.
//
// # Use
//
//	cfg := netlb.DefaultConfig()
//	cfg.PodCIDR = podCIDR                        // this node's /24
//	cfg.StateDir, cfg.RunDir = stateDir, runDir  // IPAM files; netns mounts
//	n, err := netlb.New(cfg)
//	err = n.SetupNode()                          // at start, idempotent
//	path, ip, err := n.AddPod(ctx, "web-1")      // run the pod's containers in path
//	err = n.Sync(services, endpoints)            // on every change, and on a ticker
//	err = n.SetPeers(peers)                      // when cluster membership changes
//	err = n.RemovePod("web-1")                   // after its containers stopped
//	err = n.Cleanup()                            // skiff agent --cleanup
//
// # Syncing
//
// Sync computes every SKIFF-* chain in memory. The first sync, and the sync
// after a failed one, write all of them (a full sync) and delete SKIFF-*
// chains that are not wanted any more, found with iptables-save. Later syncs
// write only the chains whose text changed and delete only the chains that
// went away, which keeps a one-endpoint change in a node with a thousand
// services at a few milliseconds. iptables-restore commits each table whole
// or not at all and stops at the first table that fails; the nat table goes
// first, so a failed restore leaves the previous rules in force (or, if only
// the filter table failed, new nat rules beside the old rejects, which is
// harmless), and the next Sync is a full one. A partial sync trusts that nobody else changed
// SKIFF-* chains since; the caller's resync ticker should call
// [Network.Resync] now and then (kube-proxy does every hour or so) so that
// the next Sync repairs outside changes.
//
// Chains: SKIFF-SERVICES (nat PREROUTING and OUTPUT jump to it) matches a
// service's cluster IP or external IP and port, and, last, local addresses
// (or Config.NodeIPs) into SKIFF-NODEPORTS. SKIFF-SVC-<hash> picks an
// endpoint with "-m statistic --mode random --probability 1/(n-i)" (and
// "-m recent" when the service asks for client-IP affinity);
// SKIFF-SEP-<hash> DNATs to one endpoint. SKIFF-EXT-<hash> marks NodePort
// and external-IP traffic for masquerade. SKIFF-MARK-MASQ sets mark 0x4000,
// which SKIFF-POSTROUTING turns into a MASQUERADE; SKIFF-POSTROUTING also
// masquerades pod traffic that leaves the cluster CIDR. In the filter table
// SKIFF-FILTER (from INPUT, FORWARD and OUTPUT) rejects traffic to services
// without endpoints at once with an ICMP port unreachable,
// SKIFF-FORWARD accepts forwarded pod traffic, and SKIFF-FIREWALL (from
// INPUT) drops packets for 127.0.0.0/8 from anywhere but 127.0.0.0/8 that
// are not part of a known connection (see route_localnet below).
//
// # Kernel needs
//
// A pod that reaches, through a service IP, another pod on the same bridge
// gets the answer bridged straight back to it, past the IP stack; the answer
// must still pass conntrack to have its source turned back into the service
// IP, so the kernel needs br_netfilter with
// net.bridge.bridge-nf-call-iptables=1 (measured here: with it 0, such a
// request times out; hairpin traffic, a pod reaching its own service, works
// either way, since it is masqueraded to the gateway). That sysctl is per
// network namespace since Linux 5.3 and defaults to 1 once br_netfilter is
// there; [Network.SetupNode] sets it, and net.ipv4.ip_forward=1. It also
// turns ICMP redirects off (conf.all and the bridge's send_redirects=0): a
// pod's packet to a service IP enters and leaves the node through the
// bridge, and the redirect that the kernel would send tells the pod to ARP
// for the VIP itself, which hangs a service without endpoints instead of
// rejecting it. These sysctls stay set after Cleanup.
//
// NodePorts on 127.0.0.1 need net.ipv4.conf.all.route_localnet=1: without
// it the kernel will not route a packet from 127.0.0.1 to a pod after DNAT.
// It also lets other hosts on the LAN, and pods, route 127.0.0.0/8 to the
// node and reach services that listen on its 127.0.0.1 only
// (CVE-2020-8558), so SKIFF-FIREWALL drops what comes in for 127.0.0.0/8
// from elsewhere unless conntrack knows it (DNAT, RELATED, ESTABLISHED),
// the rule kube-proxy writes. SetupNode turns route_localnet on only once
// that rule is in force, and notes the earlier value under StateDir the
// first time; Cleanup puts that value back before it removes the rule.
//
// SetupNode fails with [ErrBridgeNetfilter] when br_netfilter is missing,
// since without it hairpin and same-node service traffic silently break.
//
// # Namespaces
//
// Every method acts in the network namespace of the calling thread: links,
// routes and conntrack through netlink sockets opened there, iptables through
// child processes forked from there. A caller (a test "node") may lock its
// goroutine to an OS thread and switch that thread into another netns around
// the calls. Pod-side setup opens netlink handles inside the pod netns and
// never moves the thread, except for the moment a new netns is created.
package netlb
