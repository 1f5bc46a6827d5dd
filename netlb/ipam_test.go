package netlb

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestIPAM(t *testing.T) {
	dir := t.TempDir()
	a := newIPAM(dir, mustCIDR("10.88.1.0/29"))
	ip1, err := a.allocate("p1")
	if err != nil {
		t.Fatal(err)
	}
	if ip1.String() != "10.88.1.2" {
		t.Errorf("first ip %s, want 10.88.1.2 (after the gateway)", ip1)
	}
	again, _ := a.allocate("p1")
	if !again.Equal(ip1) {
		t.Errorf("same pod got %s then %s", ip1, again)
	}
	// A second allocator on the same dir is a restart.
	b := newIPAM(dir, mustCIDR("10.88.1.0/29"))
	if got, _ := b.lookup("p1"); !got.Equal(ip1) {
		t.Errorf("after restart p1 has %v, want %s", got, ip1)
	}
	// Concurrent allocations never share an IP.
	var wg sync.WaitGroup
	ips := make([]net.IP, 4)
	errs := make([]error, 4)
	for i := range ips {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			al := a
			if i%2 == 1 {
				al = b
			}
			ips[i], errs[i] = al.allocate("q" + string(rune('0'+i)))
		}(i)
	}
	wg.Wait()
	seen := map[string]bool{ip1.String(): true}
	for i, ip := range ips {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if seen[ip.String()] {
			t.Errorf("%s handed out twice", ip)
		}
		seen[ip.String()] = true
	}
	if _, err := a.allocate("full"); !errors.Is(err, ErrPoolExhausted) {
		t.Errorf("got %v, want ErrPoolExhausted", err)
	}
	if err := b.release("q0"); err != nil {
		t.Fatal(err)
	}
	if err := b.release("q0"); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, ips[0].String())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("released ip still on disk: %v", err)
	}
	if ip, err := a.allocate("new"); err != nil || !ip.Equal(ips[0]) {
		t.Errorf("after release got %v %v, want %s", ip, err, ips[0])
	}
}

// TestIPAMLookupHint: a lookup reads the one file it last found the pod
// in; when another allocator (another process on the same dir) released
// and reused that IP since, the hint is not trusted and the lookup scans.
func TestIPAMLookupHint(t *testing.T) {
	dir := t.TempDir()
	a := newIPAM(dir, mustCIDR("10.88.1.0/29"))
	b := newIPAM(dir, mustCIDR("10.88.1.0/29"))
	ip1, err := a.allocate("p1")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := a.lookup("p1"); !got.Equal(ip1) {
		t.Fatalf("lookup p1: %v, want %s", got, ip1)
	}
	// b frees p1's address and gives it to p2 (its hint file is first free).
	if err := b.release("p1"); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, ipamLastFile))
	ip2, err := b.allocate("p2")
	if err != nil || !ip2.Equal(ip1) {
		t.Fatalf("p2 got %v %v, want %s", ip2, err, ip1)
	}
	if got, err := a.lookup("p1"); err != nil || got != nil {
		t.Errorf("lookup p1 after it was released elsewhere: %v %v, want none", got, err)
	}
	if got, _ := a.lookup("p2"); !got.Equal(ip2) {
		t.Errorf("lookup p2: %v, want %s", got, ip2)
	}
}
