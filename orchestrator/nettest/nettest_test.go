package nettest

import (
	"net"
	"strconv"
	"testing"

	"github.com/skiff-edge/skiff/configs"
)

func TestAddrBelowEphemeralAndNodePorts(t *testing.T) {
	top := min(configs.NodePortMin, ephemeralLow())
	for range 50 {
		addr := Addr(t, "127.0.0.1")
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		port, _ := strconv.Atoi(p)
		if port < lowest || port >= top {
			t.Fatalf("%s: port outside [%d, %d)", addr, lowest, top)
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("%s is not free for TCP: %v", addr, err)
		}
		l.Close()
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			t.Fatalf("%s is not free for UDP: %v", addr, err)
		}
		pc.Close()
	}
}

// TestAddrSkipsTaken: a port held for TCP, or for UDP only, is passed
// over for the next one tried.
func TestAddrSkipsTaken(t *testing.T) {
	free := Addr(t, "127.0.0.1")
	_, p, _ := net.SplitHostPort(free)
	port, _ := strconv.Atoi(p)
	for _, proto := range []string{"tcp", "udp"} {
		a := Addr(t, "127.0.0.1")
		var err error
		if proto == "tcp" {
			var l net.Listener
			if l, err = net.Listen("tcp", a); err == nil {
				defer l.Close()
			}
		} else {
			var pc net.PacketConn
			if pc, err = net.ListenPacket("udp", a); err == nil {
				defer pc.Close()
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		_, hp, _ := net.SplitHostPort(a)
		heldPort, _ := strconv.Atoi(hp)
		tries := []int{heldPort - lowest, port - lowest}
		got := addr(t, "127.0.0.1", func(int) int { n := tries[0]; tries = tries[1:]; return n })
		if got != free {
			t.Errorf("with %s held for %s: got %s, want the next port tried, %s", a, proto, got, free)
		}
	}
}
