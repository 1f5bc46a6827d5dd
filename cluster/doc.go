// Package cluster is skiff's membership layer: one serf member per node,
// with encrypted gossip, tags that describe the node, member events for the
// orchestrator, and failure detection tuned for small edge clusters.
// Package cluster/pki holds the CA, the TLS API certificates, the join
// token and the nodes' client certificates.
//
// # Surface
//
//	cfg := cluster.DefaultConfig()          // edge profile, 0.0.0.0:7946, role agent
//	cfg.NodeName, cfg.BindAddr, cfg.AdvertiseAddr = ...
//	cfg.Tags = cluster.Tags{Role: cluster.RoleServer, APIAddr: "10.0.0.5:7443", IP: "10.0.0.5",
//		PodCIDR: "10.88.1.0/24", Labels: map[string]string{"site": "shop-1"}}
//	cfg.EncryptKey = key                    // seeds the keyring file on first start
//	cfg.KeyringFile = dataDir + "/serf/keyring"
//	cfg.SnapshotPath = dataDir + "/serf/snapshot"
//	m, err := cluster.Start(cfg)
//	n, err := m.Join([]string{"10.0.0.2:7946"}) // errors.Is(err, cluster.ErrGossipKey) on a key mismatch
//	m.Members()  // []MemberInfo: Name, Addr, Port, Role, APIAddr, IP, PodCIDR, Labels, Status
//	m.Servers()  // API addresses of alive role=server members
//	m.Events()   // <-chan Event{Type join|update|failed|leave|reap, Member}
//	m.SetTags(t) // e.g. once the agent has its pod CIDR
//	m.Leave()    // graceful: the others see "left"; Shutdown: they see "failed"
//
// # Tags
//
// Serf tags carry role, api, ip, pod_cidr, and one "label.<key>" tag per node
// label. Serf allows 512 encoded bytes per member; Config.Validate and
// SetTags measure the encoding (Tags.Size) and refuse more with
// ErrTagsTooLarge instead of truncating: a node with that many labels must
// shorten them. Role, API address, IP and a /24 take about 90 bytes, which
// leaves some 400 bytes for labels.
//
// # Events
//
// Events is buffered (Config.EventBuffer, 256) and never blocks serf: when
// it is full the oldest queued event is dropped to make room and Dropped
// counts it. Consumers should be level-triggered: on any event re-list
// Members() and act on the difference, which stays right whatever was
// dropped. Serf's own coalescing is off, so a failure is delivered the
// moment memberlist declares it. Statuses: alive, suspect (memberlist
// suspects it; not yet failed), leaving, left, failed.
//
// # Profiles
//
// edge (the default) shortens probing and suspicion so that a killed node is
// failed in about a second on a LAN (see serfConfig in profile.go for each
// knob and why); lan and wan are serf's and memberlist's own defaults
// (about 6 s to detect on a LAN). ProbeInterval and SuspicionMult override
// any profile. The figures are in bench/cluster.md.
//
// # Keys
//
// Gossip is always AES-256 encrypted. On first start the keyring file is
// written from EncryptKey (mode 0600); later starts read the file, which
// wins over EncryptKey. Only this package writes the file (at first start
// and in SetKeys, the one way to change the keys); serf is never given it.
// A member whose key differs is refused: its Join fails with ErrGossipKey
// and the cluster never lists it.
//
// Serf answers the key queries (_serf_install-key, _serf_use-key,
// _serf_remove-key) of any member holding the key by itself, with no way
// to turn them off. The keyring guard (keyguard.go) undoes them: right
// after serf logs such a query, at every member event and every
// Config.KeyringGuardPeriod (1 s), it restores the keys the member was
// given and logs a warning naming the change. A query still takes effect
// in memory until then (a few milliseconds when serf logs it, at most the
// period otherwise), and is never persisted.
//
// # How the server and the agent use it
//
// Server, on start: p := pki.Load(dataDir+"/pki", advertiseAddrs); serve the
// TCP API with p.ServerTLSConfig(); start a member with role=server,
// APIAddr=<advertise IP>:7443, EncryptKey=p.GossipKey(), the keyring and
// snapshot under the data dir; Join the configured peer servers if any.
// Watch Events(): on failed mark the node NotReady, on join/update/alive
// again Ready, on leave remove it (or keep it NotReady), reading the state
// from Members(). `skiff token` prints pki.ReadToken(dataDir+"/pki").
//
// Agent, on start: tok := pki.ParseToken(token); dial https://SERVER:7443
// with the CA pinned by the token (a wrong CA fails the handshake with a
// *pki.CAMismatchError before any request) and join: send a certificate
// request with tok.Secret as the bearer token and get back the node's
// client certificate, the CA, the cluster's gossip key (m.PrimaryKey() on
// the server) and the servers' gossip addresses. Then start a member with
// role=agent, PodCIDR and labels in its tags, EncryptKey=<that key>, and
// Join those addresses. Later starts present the certificate and read the
// key from the keyring file. Routes to other nodes come from the server's
// node list, not from tags: any member holding the key can set any tag,
// so the pod_cidr and ip tags are informational (and compared with the
// node list) and the gossip is used for liveness only. When its server is unreachable, an agent tries
// the others in m.Servers(). After a restart the snapshot rejoins the
// cluster by itself; Join again anyway, it is harmless.
package cluster
