package clustertest

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

// The porcupine model of the API's object semantics with revisions, on
// configs: PUT /v1/configs/{name} without a revision creates or replaces,
// with a revision replaces only if the stored object still has it (409
// conflict otherwise, 404 if it does not exist), and a GET with
// ?consistent=true answers the latest committed object. Every write stores
// a value no other write stores, and its answer carries the object's new
// revision, which is larger than any revision before it.

// kvOp is 'g' (consistent get) or 'p' (put, with Rev the CAS revision, 0
// for none).
type kvIn struct {
	Op    byte
	Key   string
	Value string
	Rev   int64
}

// kvOut is an outcome. Unknown: the call may or may not have applied (a
// timeout, a connection cut after sending, a no_quorum answer that may
// come after the log took it): its Return is infinite.
type kvOut struct {
	Unknown  bool
	OK       bool // 200/201 of a put, 200 of a get
	NotFound bool // 404
	Conflict bool // 409
	Value    string
	Rev      int64
}

// kvState is one key's state; Rev -1 is "unknown" (after an ambiguous
// write that the linearization took as applied).
type kvState struct {
	Exists bool
	Value  string
	Rev    int64
}

func kvStep(st any, in any, out any) []any {
	s, i, o := st.(kvState), in.(kvIn), out.(kvOut)
	revOK := func(r int64) bool { return s.Rev == -1 || s.Rev == r }
	switch i.Op {
	case 'g':
		switch {
		case o.OK:
			if s.Exists && s.Value == o.Value && revOK(o.Rev) {
				return []any{kvState{true, o.Value, o.Rev}}
			}
		case o.NotFound:
			if !s.Exists {
				return []any{s}
			}
		}
		return nil
	case 'p':
		applies := i.Rev == 0 || (s.Exists && revOK(i.Rev))
		switch {
		case o.Unknown:
			if applies {
				return []any{s, kvState{true, i.Value, -1}}
			}
			return []any{s}
		case o.OK:
			// Revisions only grow.
			if applies && (!s.Exists || s.Rev == -1 || o.Rev > s.Rev) {
				return []any{kvState{true, i.Value, o.Rev}}
			}
		case o.Conflict:
			if i.Rev != 0 && s.Exists && (s.Rev == -1 || s.Rev != i.Rev) {
				return []any{s}
			}
		case o.NotFound:
			if i.Rev != 0 && !s.Exists {
				return []any{s}
			}
		}
		return nil
	}
	return nil
}

// kvModel partitions the history by key.
var kvModel = porcupine.NondeterministicModel{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			k := op.Input.(kvIn).Key
			if _, ok := by[k]; !ok {
				keys = append(keys, k)
			}
			by[k] = append(by[k], op)
		}
		sort.Strings(keys)
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() []any { return []any{kvState{}} },
	Step: kvStep,
	DescribeOperation: func(in, out any) string {
		i, o := in.(kvIn), out.(kvOut)
		var res string
		switch {
		case o.Unknown:
			res = "?"
		case o.OK:
			res = fmt.Sprintf("%s@%d", o.Value, o.Rev)
		case o.NotFound:
			res = "404"
		case o.Conflict:
			res = "409"
		}
		if i.Op == 'g' {
			return fmt.Sprintf("get(%s) → %s", i.Key, res)
		}
		return fmt.Sprintf("put(%s, %s, rev %d) → %s", i.Key, i.Value, i.Rev, res)
	},
	DescribeState: func(st any) string {
		s := st.(kvState)
		if !s.Exists {
			return "∅"
		}
		return fmt.Sprintf("%s@%d", s.Value, s.Rev)
	},
}

// ---- the recording workload ----

// History is what the workers saw.
type History struct {
	mu  sync.Mutex
	ops []porcupine.Operation
	t0  time.Time

	// Acked are the marker configs whose create was acknowledged, Refused
	// those definitely refused (not_leader, or never sent), by name.
	Acked, Refused map[string]bool
	// Counts of outcomes, for the log.
	Counts map[string]int
}

func newHistory() *History {
	return &History{t0: time.Now(), Acked: map[string]bool{}, Refused: map[string]bool{}, Counts: map[string]int{}}
}

func (h *History) now() int64 { return int64(time.Since(h.t0)) }

func (h *History) add(client int, in kvIn, out kvOut, call, ret int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Output: out, Call: call, Return: ret})
}

func (h *History) count(what string) {
	h.mu.Lock()
	h.Counts[what]++
	h.mu.Unlock()
}

func (h *History) countsCopy() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := map[string]int{}
	for k, v := range h.Counts {
		m[k] = v
	}
	return m
}

// Ops returns a copy of the recorded operations.
func (h *History) Ops() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]porcupine.Operation(nil), h.ops...)
}

// Closed returns the operations with each ambiguous write whose value some
// other operation observed given, as its return time, the earliest return
// of an operation that observed it: it took effect before that (values are
// unique to one write). An ambiguous write never observed keeps an
// infinite return time (it may have applied and been overwritten, or
// never). This keeps the search of porcupine small, and loses nothing: no
// linearization that explains the history puts such a write later.
func (h *History) Closed() []porcupine.Operation {
	ops := h.Ops()
	seen := map[string]int64{}
	for _, op := range ops {
		o := op.Output.(kvOut)
		if o.OK && !o.Unknown {
			if r, ok := seen[o.Value]; !ok || op.Return < r {
				seen[o.Value] = op.Return
			}
		}
	}
	for i, op := range ops {
		in, o := op.Input.(kvIn), op.Output.(kvOut)
		if in.Op == 'p' && o.Unknown {
			if r, ok := seen[in.Value]; ok && r >= op.Call {
				ops[i].Return = r
			}
		}
	}
	return ops
}

// Check runs porcupine on the history; the result and, if illegal, a
// description of the partition that failed.
func (h *History) Check(timeout time.Duration) (porcupine.CheckResult, string) {
	m := kvModel.ToModel()
	res, info := porcupine.CheckOperationsVerbose(m, h.Closed(), timeout)
	if res != porcupine.Illegal {
		return res, ""
	}
	// Describe the longest partial linearization of the failing partition.
	var b strings.Builder
	for p := range info.PartialLinearizations() {
		for _, lin := range info.PartialLinearizations()[p] {
			fmt.Fprintf(&b, "partition %d: a longest linearizable prefix has %d ops\n", p, len(lin))
			break
		}
	}
	return res, b.String()
}

// kvCaller does the API calls of the workload on server sockets.
type kvCaller struct {
	ha      *HA
	hist    *History
	timeout time.Duration
}

func configBody(name, value string, rev int64) any {
	return api.Config{Meta: api.Meta{Name: name, Revision: rev},
		Spec: configs.FilesSpec{Files: map[string]string{"v": value}}}
}

// put does one PUT on server srv and records it; it returns the outcome
// and whether the answer was a definite refusal (not applied: not_leader,
// or the request was never sent), in which case nothing is recorded.
func (k *kvCaller) put(client, srv int, key, value string, rev int64) (kvOut, RawResult, bool) {
	in := kvIn{Op: 'p', Key: key, Value: value, Rev: rev}
	call := k.hist.now()
	r := k.ha.Raw(srv, http.MethodPut, "/v1/configs/"+key, configBody(key, value, rev), k.timeout)
	ret := k.hist.now()
	out, refused := classifyPut(r)
	if refused {
		k.hist.count("put refused " + refusal(r))
		return out, r, true
	}
	if out.Unknown {
		k.hist.count("put ambiguous " + refusal(r))
		ret = math.MaxInt64
	} else {
		k.hist.count(fmt.Sprintf("put %d", r.Status))
	}
	k.hist.add(client, in, out, call, ret)
	return out, r, false
}

func refusal(r RawResult) string {
	if r.Err != nil {
		if !r.Sent {
			return "(not sent)"
		}
		return "(transport error)"
	}
	return fmt.Sprintf("(%d %s)", r.Status, r.Code)
}

// classifyPut maps an answer to an outcome. A not_leader answer and a
// request never sent did not apply; a no_quorum answer, a 5xx, a timeout
// or a cut connection may have (raft may commit an entry whose apply timed
// out); 200/201, 404, 409 are definite.
func classifyPut(r RawResult) (kvOut, bool) {
	if r.Err != nil {
		if !r.Sent {
			return kvOut{}, true
		}
		return kvOut{Unknown: true}, false
	}
	switch r.Status {
	case http.StatusOK, http.StatusCreated:
		var c api.Config
		if err := json.Unmarshal(r.Body, &c); err != nil {
			return kvOut{Unknown: true}, false
		}
		return kvOut{OK: true, Value: c.Spec.Files["v"], Rev: c.Revision}, false
	case http.StatusNotFound:
		return kvOut{NotFound: true}, false
	case http.StatusConflict:
		return kvOut{Conflict: true}, false
	case http.StatusServiceUnavailable:
		if r.Code == "not_leader" {
			return kvOut{}, true
		}
	}
	return kvOut{Unknown: true}, false
}

// get does one consistent GET on server srv and records it when it
// answered 200 or 404 (a failed read has no effect and is left out).
func (k *kvCaller) get(client, srv int, key string) (kvOut, RawResult, bool) {
	call := k.hist.now()
	r := k.ha.Raw(srv, http.MethodGet, "/v1/configs/"+key+"?consistent=true", nil, k.timeout)
	ret := k.hist.now()
	var out kvOut
	switch {
	case r.Err == nil && r.Status == http.StatusOK:
		var c api.Config
		if err := json.Unmarshal(r.Body, &c); err != nil {
			k.hist.count("get bad body")
			return out, r, false
		}
		out = kvOut{OK: true, Value: c.Spec.Files["v"], Rev: c.Revision}
	case r.Err == nil && r.Status == http.StatusNotFound:
		out = kvOut{NotFound: true}
	default:
		k.hist.count("get failed " + refusal(r))
		return out, r, false
	}
	k.hist.count(fmt.Sprintf("get %d", r.Status))
	k.hist.add(client, kvIn{Op: 'g', Key: key}, out, call, ret)
	return out, r, true
}

// Workload runs clients until stop closes: each has a home server and
// moves to the leader a not_leader answer names, or to another server when
// its own does not answer; it reads, writes blindly, writes with the
// revision it last read, and now and then creates a marker config of its
// own whose fate is checked at the end.
type Workload struct {
	k       *kvCaller
	keys    []string
	clients int
	servers func() []int // the server nodes clients may use
	stop    chan struct{}
	wg      sync.WaitGroup
	ops     atomic.Int64 // calls made
	done    atomic.Int64 // calls with a definite answer (200, 201, 404, 409)
	prefix  string
}

func newWorkload(h *HA, hist *History, clients int, keys []string, servers func() []int) *Workload {
	return &Workload{k: &kvCaller{ha: h, hist: hist, timeout: 3 * time.Second}, keys: keys,
		clients: clients, servers: servers, stop: make(chan struct{}), prefix: "m-" + h.id}
}

// Start starts the clients.
func (w *Workload) Start() {
	for c := range w.clients {
		w.wg.Add(1)
		go w.run(c)
	}
}

// Stop stops the clients and waits for their calls to end.
func (w *Workload) Stop() {
	close(w.stop)
	w.wg.Wait()
}

// Ops is how many calls the clients made.
func (w *Workload) Ops() int64 { return w.ops.Load() }

// Done is how many calls had a definite answer: the store worked.
func (w *Workload) Done() int64 { return w.done.Load() }

func (w *Workload) run(c int) {
	defer w.wg.Done()
	rng := rand.New(rand.NewPCG(uint64(c), uint64(time.Now().UnixNano())))
	lastRev := map[string]int64{}
	seq := 0
	pick := func() int {
		s := w.servers()
		if len(s) == 0 {
			return -1
		}
		return s[(c+rng.IntN(len(s)))%len(s)]
	}
	srv := pick()
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		if srv < 0 {
			if srv = pick(); srv < 0 {
				time.Sleep(20 * time.Millisecond)
				continue
			}
		}
		w.ops.Add(1)
		seq++
		key := w.keys[rng.IntN(len(w.keys))]
		value := fmt.Sprintf("c%d-%d", c, seq)
		var r RawResult
		switch x := rng.IntN(10); {
		case x < 4:
			out, rr, ok := w.k.get(c, srv, key)
			r = rr
			if ok && out.OK {
				lastRev[key] = out.Rev
			}
		case x < 6:
			out, rr, _ := w.k.put(c, srv, key, value, 0)
			r = rr
			if out.OK {
				lastRev[key] = out.Rev
			}
		case x < 9:
			out, rr, _ := w.k.put(c, srv, key, value, lastRev[key])
			r = rr
			if out.OK {
				lastRev[key] = out.Rev
			}
		default:
			name := fmt.Sprintf("%s-c%d-%d", w.prefix, c, seq)
			rr := w.k.ha.Raw(srv, http.MethodPut, "/v1/configs/"+name, configBody(name, value, 0), w.k.timeout)
			r = rr
			out, refused := classifyPut(rr)
			w.k.hist.mu.Lock()
			switch {
			case refused:
				w.k.hist.Refused[name] = true
			case out.OK:
				w.k.hist.Acked[name] = true
			}
			w.k.hist.mu.Unlock()
		}
		if r.Err == nil && (r.Status == http.StatusOK || r.Status == http.StatusCreated || r.Status == http.StatusNotFound || r.Status == http.StatusConflict) {
			w.done.Add(1)
		} else {
			// Do not spin on a server that is down or has no quorum.
			time.Sleep(20 * time.Millisecond)
		}
		// Follow a leader hint, or move on from a server that did not
		// answer or has no quorum.
		switch {
		case r.Code == "not_leader" && r.Header.Get("Skiff-Leader") != "":
			if l := w.k.ha.NodeOfAPIAddr(r.Header.Get("Skiff-Leader")); l >= 0 {
				srv = l
			}
		case r.Err != nil || r.Code == "no_quorum" || r.Code == "not_leader":
			srv = pick()
		case rng.IntN(20) == 0:
			srv = pick() // spread the load over the servers
		}
	}
}
