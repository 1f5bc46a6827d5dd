package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
)

// DefaultTerminationGrace is the grace between SIGTERM and SIGKILL when the
// pod does not say.
const DefaultTerminationGrace = 10 * time.Second

// balancer says whether this node's load balancer may still send traffic
// to an IP. Satisfied by *lb.
type balancer interface {
	inLB(ip string) bool
}

var _ balancer = (*lb)(nil)

// teardown stops the pod: out of the load balancers first, then SIGTERM,
// grace, SIGKILL, then the IP is freed and the object (if marked
// deleting) deleted. Every step is idempotent: a teardown that failed
// half-way (or an agent restarted in the middle) is run again from the
// start.
func (w *podWorker) teardown(ctx context.Context, p *api.Pod) (bool, error) {
	// Not ready first: the endpoints controller drops the pod from every
	// node's endpoints on this report.
	if p != nil && w.reported != nil && w.reported.Ready {
		s := *w.reported
		s.Ready = false
		s.Containers = append([]api.ContainerStatus(nil), s.Containers...)
		for i := range s.Containers {
			s.Containers[i].Ready = false
		}
		w.write(ctx, p, s)
	}
	ip := w.ip
	if ip == "" {
		if ips, err := w.p.net.Pods(); err == nil && ips[w.name] != nil {
			ip = ips[w.name].String()
		}
	}
	// We leave the load balancers before SIGTERM so that no new
	// connection reaches a dying pod. Other nodes drop it from the same
	// endpoints change; the wait is bounded so that a stuck watch cannot
	// keep a pod forever.
	if ip != "" && w.p.lb.inLB(ip) {
		deadline := time.Now().Add(w.p.drainTimeout)
		t := time.NewTicker(20 * time.Millisecond)
		for w.p.lb.inLB(ip) && time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				t.Stop()
				return false, ctx.Err()
			case <-t.C:
			}
		}
		t.Stop()
		if w.p.lb.inLB(ip) {
			w.log.Warn("the load balancer still lists the pod; stopping it anyway", "ip", ip, "waited", w.p.drainTimeout)
		}
	}
	w.stopProbers()
	grace := DefaultTerminationGrace
	if p != nil && p.Spec.TerminationGrace > 0 {
		grace = p.Spec.TerminationGrace.D()
	}
	if p != nil {
		w.event(api.EventNormal, "Killing", fmt.Sprintf("stopping the pod (grace %s)", grace))
	}
	// The containers stop (SIGTERM, grace, SIGKILL) before the network
	// goes: a pod that still runs keeps its IP, so that the IP cannot be
	// handed to a new pod while old connections may still reach it.
	if err := w.p.sandboxes.RemovePod(ctx, w.name, grace); err != nil {
		return false, fmt.Errorf("remove pod: %w", err)
	}
	if err := w.p.net.RemovePod(w.name); err != nil {
		return false, fmt.Errorf("remove pod network: %w", err)
	}
	w.ip, w.netChecked = "", time.Time{}
	if p != nil && p.Spec.Deleting != nil {
		if err := w.p.api.DeletePod(ctx, w.name); err != nil && !client.IsNotFound(err) {
			return false, fmt.Errorf("delete pod object: %w", err)
		}
	}
	w.log.Info("pod removed")
	return true, nil
}
