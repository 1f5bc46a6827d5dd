package api

// Several servers (docs/ha.md): the raft configuration, a server's join,
// and the answers of a follower.

// RoleServer is a token that lets a box join as another server (POST
// /v1/join/server answers with the CA key: only an admin makes one), and
// the identity of a server's own certificate (CN server:<name>).
const RoleServer = "server"

// Error codes of a server that cannot take a write (503).
const (
	// CodeNotLeader: this server is a follower; the Skiff-Leader header
	// names the leader's API address (HOST:PORT) when it knows one.
	CodeNotLeader = "not_leader"
	// CodeNoQuorum: no leader is reachable (fewer than a majority of the
	// servers answer); writes and consistent reads fail until one is.
	CodeNoQuorum = "no_quorum"
)

// LeaderHeader names the leader's API address on a not_leader answer.
const LeaderHeader = "Skiff-Leader"

// ServerJoinRequest asks for the cluster's server material (POST
// /v1/join/server, with a token of role server).
type ServerJoinRequest struct {
	// Name is the joining server's node name (its raft ID).
	Name string `json:"name"`
}

// ServerJoinResponse is what every server of a cluster holds alike.
type ServerJoinResponse struct {
	// CA and CAKey are the cluster CA's certificate and key (PEM).
	CA    string `json:"ca"`
	CAKey string `json:"ca_key"`
	// JoinSecret is the agents' join secret (`skiff token`).
	JoinSecret string `json:"join_secret"`
	// GossipKey is the gossip key in use.
	GossipKey []byte `json:"gossip_key"`
	// SecretKeys is the content of <data_dir>/secret-keys (the keys that
	// seal secrets in the store).
	SecretKeys string `json:"secret_keys"`
	// Cluster says where the alive servers are.
	Cluster ClusterInfo `json:"cluster"`
}

// ServerAddRequest asks the leader to make a server a voter (POST
// /v1/servers).
type ServerAddRequest struct {
	Name string `json:"name"`
	// RaftAddr is its API address (raft rides it), HOST:PORT.
	RaftAddr string `json:"raft_addr"`
}

// RaftServer is one server of the raft configuration (GET /v1/servers).
type RaftServer struct {
	Name     string `json:"name"`
	RaftAddr string `json:"raft_addr"`
	// Suffrage is voter or nonvoter.
	Suffrage string `json:"suffrage"`
	Leader   bool   `json:"leader,omitempty"`
}

// KindJoinSecret keeps the agents' join secret in the replicated store
// (one record, JoinSecretName), so that `skiff token rotate` on one server
// takes effect on all of them. No route serves it.
const (
	KindJoinSecret = "joinsecrets"
	JoinSecretName = "current"
)

// JoinSecret is the join secret's record, written by a rotation.
type JoinSecret struct {
	Meta
	Spec JoinSecretSpec `json:"spec"`
}

// JoinSecretSpec holds the secret itself: every server needs it to print
// the join token (`skiff token`), and a backup holds pki/join-secret too.
type JoinSecretSpec struct {
	Secret string `json:"secret"`
}

// GetMeta makes JoinSecret an Object.
func (j *JoinSecret) GetMeta() *Meta { return &j.Meta }
