// Package nettest gives tests addresses to hand to a server they start.
//
// A port picked by listening on port 0 and closing comes from the
// kernel's ephemeral range, the range it also draws the local ports of
// outgoing connections from: between the close and the server's bind,
// any of the many connections a test run makes may take it. The ports
// here come from below that range and below the node ports, where
// nothing but a listener asked for by number binds.
package nettest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"testing"

	"github.com/skiff-edge/skiff/configs"
)

// lowest is the lowest port handed out: above the well-known and the
// usual registered services' ports.
const lowest = 20000

// Addr returns host:port with a port that is free on host for both TCP
// and UDP now (a gossip address needs both), chosen at random below the
// ephemeral range and the node ports.
func Addr(t testing.TB, host string) string {
	t.Helper()
	return addr(t, host, rand.IntN)
}

// addr is Addr with the random choice of a port offset given.
func addr(t testing.TB, host string, pick func(n int) int) string {
	t.Helper()
	top := min(configs.NodePortMin, ephemeralLow()) // exclusive
	if top <= lowest {
		t.Fatalf("nettest: no ports below the ephemeral range (it starts at %d)", top)
	}
	for range 100 {
		a := net.JoinHostPort(host, fmt.Sprint(lowest+pick(top-lowest)))
		l, err := net.Listen("tcp", a)
		if err != nil {
			continue
		}
		pc, err := net.ListenPacket("udp", a)
		l.Close()
		if err != nil {
			continue
		}
		pc.Close()
		return a
	}
	t.Fatalf("nettest: no free port on %s in 100 tries", host)
	return ""
}

// ephemeralLow reads the low end of the kernel's ephemeral port range
// (32768 by default).
func ephemeralLow() int {
	lo := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		fmt.Sscan(string(b), &lo)
	}
	return lo
}
