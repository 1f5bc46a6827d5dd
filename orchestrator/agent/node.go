package agent

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/skiff-edge/skiff/netlb"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

// register writes this node's object (labels, capacity, addresses, Ready)
// and returns it as the server stored it, with its pod CIDR.
func (a *Agent) register(ctx context.Context) (*api.Node, error) {
	addr, err := a.advertiseAddr()
	if err != nil {
		return nil, err
	}
	capacity := machineResources()
	capacity.Pods = a.cfg.Node.MaxPods
	alloc := capacity
	alloc.MilliCPU = max(0, alloc.MilliCPU-int64(a.cfg.Node.Reserved.CPU*1000))
	alloc.Memory = max(0, alloc.Memory-int64(a.cfg.Node.Reserved.Memory))
	var node *api.Node
	_, err = retry(ctx, func() (struct{}, error) {
		n, err := a.updateNode(ctx, func(n *api.Node) {
			n.Spec.Labels = maps.Clone(a.cfg.Node.Labels)
			n.Status.Capacity = capacity
			n.Status.Allocatable = alloc
			n.Status.Addresses = []string{addr}
			n.Status.APIAddr = a.cfg.PodIOAddr
			setReady(n, time.Now())
		})
		if err != nil {
			a.log.Warn("register node", "err", err)
			return struct{}{}, err
		}
		node = n
		return struct{}{}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("register node %s: %w", a.name, err)
	}
	a.log.Info("node registered", "address", addr, "milli_cpu", capacity.MilliCPU, "memory", capacity.Memory, "pod_cidr", node.Spec.PodCIDR)
	return node, nil
}

// updateNode reads the node (an empty one if new), applies fn and writes it
// back with the revision read, retrying on a conflict.
func (a *Agent) updateNode(ctx context.Context, fn func(*api.Node)) (*api.Node, error) {
	for range 5 {
		n, err := a.c.GetNode(ctx, a.name)
		switch {
		case client.IsNotFound(err):
			n = &api.Node{Meta: api.Meta{Name: a.name}}
		case err != nil:
			return nil, err
		}
		fn(n)
		out, err := a.c.PutNode(ctx, n)
		if client.IsConflict(err) {
			continue
		}
		return out, err
	}
	return nil, fmt.Errorf("update node %s: conflicts persisted", a.name)
}

// setReady sets the Ready condition true with a fresh heartbeat.
func setReady(n *api.Node, now time.Time) {
	for i := range n.Status.Conditions {
		c := &n.Status.Conditions[i]
		if c.Type == api.NodeReady {
			if !c.Status {
				c.LastChange = now
			}
			c.Status, c.Reason, c.Message, c.LastHeartbeat = true, "AgentReady", "", now
			return
		}
	}
	n.Status.Conditions = append(n.Status.Conditions, api.Condition{
		Type: api.NodeReady, Status: true, Reason: "AgentReady", LastHeartbeat: now, LastChange: now,
	})
}

// heartbeat renews the node's lease every Heartbeat: the server keeps it
// in memory, so a beat writes nothing to disk on either side. The Node
// object is written only when its state changes: when the server says it
// is not Ready (marked down while this agent was away or cut off) the
// agent reports it Ready; when it no longer knows the node, the agent
// registers it again.
func (a *Agent) heartbeat(ctx context.Context) {
	t := time.NewTicker(a.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			hctx, cancel := context.WithTimeout(ctx, a.cfg.Heartbeat)
			err := a.beat(hctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				a.log.Warn("heartbeat", "err", err)
			}
		}
	}
}

// beat renews the lease once, and writes the node's Ready condition when
// the server does not have it Ready.
func (a *Agent) beat(ctx context.Context) error {
	lease, err := a.c.RenewLease(ctx, a.name)
	switch {
	case err == nil && lease.Ready:
		return nil
	case err == nil:
		a.log.Info("the server has this node not ready; reporting it ready")
	case client.IsNotFound(err):
		a.log.Warn("the server does not know this node; registering it again")
		_, err = a.register(ctx)
		return err
	default:
		return err
	}
	_, err = a.updateNode(ctx, func(n *api.Node) { setReady(n, time.Now()) })
	return err
}

// advertiseAddr is the configured address, or the source address of the
// default route, or 127.0.0.1 on a machine without one.
func (a *Agent) advertiseAddr() (string, error) {
	if a.cfg.Node.AdvertiseAddr != "" {
		return a.cfg.Node.AdvertiseAddr, nil
	}
	if ip, err := netlb.RouteSource(net.IPv4(1, 1, 1, 1)); err == nil && ip != nil {
		return ip.String(), nil
	}
	a.log.Warn("no default route: advertising 127.0.0.1 (set advertise_addr)")
	return "127.0.0.1", nil
}

// machineResources reads the CPU count and MemTotal of the machine.
func machineResources() api.Resources {
	r := api.Resources{MilliCPU: int64(runtime.NumCPU()) * 1000}
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return r
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			if kb, err := strconv.ParseInt(fields[1], 10, 64); err == nil {
				r.Memory = kb * 1024
			}
			break
		}
	}
	return r
}
