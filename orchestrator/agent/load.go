package agent

import (
	"context"
	"net"
	"sort"
	"strconv"
	"time"

	"github.com/skiff-edge/skiff/netlb"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

// Load measurement: every LoadInterval the agent reads, from the data path
// it already runs, the new connections per endpoint (the DNAT counters of
// the load balancer's per-endpoint chains, see netlb/counters_linux.go),
// the established connections per endpoint (one conntrack dump) and the
// CPU of its pods (their cgroups), turns the differences into rates in
// memory and sends the server one small summary. Nothing is written to
// disk, here or on the server.

// loadSources is what the sampler reads. The real ones are the node
// network and the container runtime; tests give fakes.
type loadSources struct {
	// counts returns the new-connection counters per service.
	counts func() (map[string]*netlb.ServiceCount, error)
	// active returns established connections per endpoint "ip:port"; nil
	// leaves Active at 0.
	active func() (map[string]int, error)
	// cpu returns the cumulative CPU time, in nanoseconds, of each running
	// pod of the node.
	cpu func() map[string]uint64
}

// loadSampler turns counters into rates. It keeps the previous sample
// only: a counter that was reset (its chain rewritten: the generation
// changed, or the count fell) counts from zero, and the service is marked
// partial; a counter never seen before counts whole only when the sampler
// had a previous sample (the chain was made since). The first sample after
// a start is a baseline and yields no report, so that an agent restart
// never reports the counters' whole history as one interval's traffic.
//
// The conntrack dump (active) is skipped while it cannot find anything:
// a connection through a service passes the nat table first, which counts
// it, so when the last dump found no connection and no counter moved for
// quietSamples samples (or was reset), there is still none; Active is 0.
// The quiet samples leave a slow handshake time to become established
// before the dumps stop. (The dump was a tenth of an idle node's CPU: it
// copies every flow of the node, the probes' too.)
type loadSampler struct {
	src  loadSources
	now  func() time.Time
	prev map[string]netlb.EndpointCount // "service|ip:port"
	cpu  map[string]uint64
	at   time.Time
	// quiet counts the samples in a row (up to quietSamples) that saw no
	// counter move and no active connection.
	quiet int
}

// quietSamples is how many quiet samples in a row (see loadSampler) end
// the conntrack dumps: at LoadInterval 2 s, 10 s after the last new
// connection.
const quietSamples = 5

// idleEvery: a quiet sampler samples every idleEvery intervals (6 s at
// LoadInterval 2 s), at most every maxIdleInterval (well within the 10 s
// the server counts a report for); see loadLoop.
const (
	idleEvery       = 3
	maxIdleInterval = 6 * time.Second
)

// quietAt says whether active holds no connection to an endpoint of
// counts (nil, a skipped or failed dump, holds none).
func quietAt(active map[string]int, counts map[string]*netlb.ServiceCount) bool {
	if len(active) == 0 {
		return true
	}
	for _, sc := range counts {
		for _, e := range sc.Endpoints {
			if active[net.JoinHostPort(e.Endpoint.IP.String(), strconv.Itoa(e.Endpoint.Port))] > 0 {
				return false
			}
		}
	}
	return true
}

func epKey(svc string, e netlb.Endpoint) string {
	return svc + "|" + net.JoinHostPort(e.IP.String(), strconv.Itoa(e.Port))
}

// sample reads the sources once. It returns nil for the first sample and
// after a read error (the next one is then a baseline again).
func (s *loadSampler) sample() (*api.NodeLoad, error) {
	now := s.now()
	counts, err := s.src.counts()
	if err != nil {
		s.prev, s.cpu = nil, nil
		return nil, err
	}
	moved := s.prev == nil
	for name, sc := range counts {
		for _, e := range sc.Endpoints {
			if old, ok := s.prev[epKey(name, e.Endpoint)]; !ok || old.Gen != e.Gen || old.New != e.New {
				moved = true
			}
		}
	}
	var active map[string]int
	failed := false
	if s.src.active != nil && (moved || s.quiet < quietSamples) {
		if active, err = s.src.active(); err != nil {
			active, failed = nil, true // a gauge only: the rates still count
		}
	}
	if moved || failed || !quietAt(active, counts) {
		s.quiet = 0
	} else if s.quiet < quietSamples {
		s.quiet++
	}
	var cpu map[string]uint64
	if s.src.cpu != nil {
		cpu = s.src.cpu()
	}
	prev, prevCPU, prevAt := s.prev, s.cpu, s.at
	s.prev = make(map[string]netlb.EndpointCount, len(prev))
	for name, sc := range counts {
		for _, e := range sc.Endpoints {
			s.prev[epKey(name, e.Endpoint)] = e
		}
	}
	s.cpu, s.at = cpu, now
	if prev == nil {
		return nil, nil
	}
	secs := now.Sub(prevAt).Seconds()
	if secs <= 0 {
		return nil, nil
	}
	l := &api.NodeLoad{Interval: secs}
	names := make([]string, 0, len(counts))
	for n := range counts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		sl := api.ServiceLoad{Service: name}
		for _, e := range counts[name].Endpoints {
			addr := net.JoinHostPort(e.Endpoint.IP.String(), strconv.Itoa(e.Endpoint.Port))
			var delta uint64
			switch old, ok := prev[epKey(name, e.Endpoint)]; {
			case !ok:
				delta = e.New // made since the last sample
			case old.Gen != e.Gen || e.New < old.New:
				delta, sl.Partial = e.New, true // reset since: count what is there
			default:
				delta = e.New - old.New
			}
			el := api.EndpointLoad{IP: e.Endpoint.IP.String(), Port: e.Endpoint.Port,
				NewPerSec: float64(delta) / secs, Active: active[addr]}
			sl.NewPerSec += el.NewPerSec
			sl.Active += el.Active
			sl.Endpoints = append(sl.Endpoints, el)
		}
		l.Services = append(l.Services, sl)
	}
	pods := make([]string, 0, len(cpu))
	for p := range cpu {
		pods = append(pods, p)
	}
	sort.Strings(pods)
	for _, p := range pods {
		old, ok := prevCPU[p]
		if !ok || cpu[p] < old {
			continue // new, or a container restarted: no rate this time
		}
		l.Pods = append(l.Pods, api.PodLoad{Pod: p, CPU: float64(cpu[p]-old) / 1e9 / secs})
	}
	return l, nil
}

// loadLoop samples every interval and sends the summary to the server.
// A failed send is dropped: the next one replaces it. While the sampler
// is quiet (no new connection and none open for quietSamples samples) it
// samples every idleEvery intervals instead: the server still has a
// fresh report (loadstats.DefaultMaxAge, 10 s, is longer), averaged over
// the longer interval (the counters lose nothing in between), and the
// first new connection brings the short interval back at the next
// sample. Only a pod that burns CPU without any connection is then
// measured over the longer interval.
func (a *Agent) loadLoop(ctx context.Context, nw *netlb.Network, interval time.Duration) {
	s := &loadSampler{now: time.Now, src: loadSources{
		counts: nw.Counts,
		active: netlb.ActiveConns,
		cpu:    a.podCPU,
	}}
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l, err := s.sample()
		if s.quiet >= quietSamples {
			t.Reset(max(min(idleEvery*interval, maxIdleInterval), interval))
		} else {
			t.Reset(interval)
		}
		if err != nil {
			a.rates.Store(nil) // no figures rather than stale ones
			a.log.Debug("load sample failed", "err", err)
			continue
		}
		if l == nil {
			continue
		}
		rates := make(map[string]float64, len(l.Services))
		for _, sl := range l.Services {
			rates[sl.Service] = sl.NewPerSec
		}
		a.rates.Store(&rates)
		sctx, cancel := context.WithTimeout(ctx, interval)
		err = a.c.PutNodeLoad(sctx, a.name, l)
		cancel()
		if err != nil && ctx.Err() == nil {
			a.log.Debug("load report failed", "err", err)
		}
	}
}

// podCPU reads the cumulative CPU time of every container of the node's
// pods from their cgroups, summed per pod. A pod with a container that is
// not running is left out.
func (a *Agent) podCPU() map[string]uint64 {
	a.mu.Lock()
	rt := a.rt
	a.mu.Unlock()
	if rt == nil || a.pods == nil {
		return nil
	}
	type podCs struct {
		name string
		cs   []string
	}
	var list []podCs
	a.pods.mu.Lock()
	for name, w := range a.pods.workers {
		w.mu.Lock()
		if w.pod != nil && w.pod.Spec.Deleting == nil {
			pc := podCs{name: name}
			for c := range w.pod.Spec.Containers {
				pc.cs = append(pc.cs, c)
			}
			list = append(list, pc)
		}
		w.mu.Unlock()
	}
	a.pods.mu.Unlock()
	out := make(map[string]uint64, len(list))
pods:
	for _, p := range list {
		var sum uint64
		for _, c := range p.cs {
			n, err := rt.CPUNanos(p.name, c) // one file, not Stats: see CPUNanos
			if err != nil {
				continue pods
			}
			sum += n
		}
		out[p.name] = sum
	}
	return out
}
