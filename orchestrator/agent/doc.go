// Package agent is skiff's node agent: the sync loop that makes one node
// run the pods bound to it, shaped like the kubelet's.
//
// An Agent registers its node through the API (capacity from /proc,
// allocatable less the config's reserve, labels, addresses, a Ready
// condition whose LastHeartbeat it refreshes), takes the pod CIDR the server
// gives it, sets up netlb/ with it and then converges, over and over:
//
//   - pods bound to the node (a watch with ?node=, resumed from the last
//     revision, relisted on 410): one worker per pod ensures the images
//     (progress as pod events), the sandbox network (netlb.AddPod), the
//     sandbox and containers (containers.StartPod, StartContainer), runs the
//     probes and reports status (phase, IP, ready, container states,
//     restarts, exit reasons) when it changed;
//   - a pod marked deleting leaves the load balancers first (its node's
//     netlb has synced without it, bounded wait), then gets SIGTERM, its
//     grace, SIGKILL, then its IP is freed and the object deleted; a local
//     pod whose object is gone is stopped the same way;
//   - services and endpoints (watches): netlb.Sync from the whole set,
//     coalesced.
//
// Every step is idempotent by pod name, so an agent that restarts in the
// middle of anything converges: containers.Open adopts running containers,
// netlb.AddPod finds the pod's netns and IP, and the pods' last ready state
// is kept until a probe decides, so a restart causes no endpoint flap.
//
// The agent saves what it runs (pod CIDR, its pods, services, endpoints) to
// a local cache. A node with a cache whose server does not answer within
// Config.OfflineAfter (1s) starts from it: running containers are adopted,
// the load balancer is programmed from the cached services and endpoints,
// and the agent keeps trying the server, catching up (relist, adopt) when
// one answers.
//
// The code is in two halves composed by Agent (agent.go): the pod side
// (pods.go: the pod watch and one worker per pod; pod.go, pull.go,
// teardown.go, probe.go, status.go: what a worker does) and the
// load-balancer side (lb.go: the service and endpoints watches and the
// netlb sync; lbstate.go: the mapping onto netlb's shapes). Each half
// reaches containers/, netlb/ and the server through interfaces of one to
// three methods declared beside their users and checked at compile time
// against *containers.Runtime, *images.Store, *netlb.Network and
// *client.Client; the tests drive them with fakes.
//
// The agent talks to the server only through orchestrator/client (the unix
// socket in `skiff server --agent`, TCP with a token in `skiff agent`), and
// serves logs and exec for the API through its Logs and Exec methods
// (api.PodIO).
package agent
