package ui_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// fill writes 2 nodes, 20 apps of 5 pods (100 pods, Running and ready),
// 20 services with their endpoints and 200 events straight into the store.
func fill(b testing.TB, p *inproc) {
	b.Helper()
	_, err := p.st.Update(func(tx *store.Tx) error {
		for i := range 2 {
			n := &api.Node{Meta: api.Meta{Name: fmt.Sprintf("edge-%02d", i)}}
			n.Status.Allocatable = api.Resources{MilliCPU: 4000, Memory: 8 << 30}
			n.Status.Conditions = []api.Condition{{Type: api.NodeReady, Status: true}}
			n.Status.Addresses = []string{fmt.Sprintf("10.0.0.%d", i+2)}
			if err := tx.Put(api.KindNode, n); err != nil {
				return err
			}
		}
		for a := range 20 {
			name := fmt.Sprintf("app-%02d", a)
			r := 5
			spec := configs.AppSpec{Replicas: &r, Containers: map[string]*configs.ContainerSpec{"c": {Image: "localhost/skiff-demo:1", CPU: 0.1, Memory: 32 << 20}}}
			if err := tx.Put(api.KindApp, &api.App{Meta: api.Meta{Name: name}, Spec: spec, Status: api.AppStatus{TemplateHash: "abcdef0123", Replicas: 5, Ready: 5, Updated: 5}}); err != nil {
				return err
			}
			ep := &api.Endpoints{Meta: api.Meta{Name: name}}
			for k := range 5 {
				pod := &api.Pod{Meta: api.Meta{Name: fmt.Sprintf("%s-%d", name, k)}, Spec: api.PodSpec{App: name, Node: fmt.Sprintf("edge-%02d", k%2), Containers: spec.Containers},
					Status: api.PodStatus{Phase: api.PodRunning, Ready: true, IP: fmt.Sprintf("10.88.%d.%d", a, k+2)}}
				if err := tx.Put(api.KindPod, pod); err != nil {
					return err
				}
				ep.Endpoints = append(ep.Endpoints, api.Endpoint{Pod: pod.Name, Node: pod.Spec.Node, IP: pod.Status.IP, Port: 8080})
			}
			svc := &api.Service{Meta: api.Meta{Name: name}, Spec: configs.ServiceSpec{App: name, Port: 80, Type: "cluster"}, Status: api.ServiceStatus{ClusterIP: fmt.Sprintf("10.96.0.%d", a+10)}}
			if err := tx.Put(api.KindService, svc); err != nil {
				return err
			}
			if err := tx.Put(api.KindEndpoints, ep); err != nil {
				return err
			}
		}
		for e := range 200 {
			typ := api.EventNormal
			if e%10 == 0 {
				typ = api.EventWarning
			}
			if err := tx.RecordEvent(fmt.Sprintf("pods/app-%02d-%d", e%20, e%5), typ, fmt.Sprintf("Reason%d", e), "something happened", "bench"); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

// sessionCookie signs in as admin and returns the session cookie.
func sessionCookie(b testing.TB, p *inproc) *http.Cookie {
	b.Helper()
	tok, _ := p.token(api.RoleAdmin)
	br := p.browser()
	resp, _ := br.do("POST", "/ui/login", map[string][]string{"token": {tok}}, nil)
	for _, c := range resp.Cookies() {
		if c.Name == "skiff_session" {
			return c
		}
	}
	b.Fatal("no session cookie")
	return nil
}

// BenchmarkOverview renders the overview (100 pods, 20 services, 2 nodes,
// 200 events) through the console's handler; the baseline beside it is
// the JSON API's GET /v1/pods of the same store.
func BenchmarkOverview(b *testing.B) {
	p := newInproc(b)
	fill(b, p)
	cookie := sessionCookie(b, p)
	b.Run("console-overview", func(b *testing.B) {
		var n int
		for b.Loop() {
			req := httptest.NewRequest("GET", "/ui/", nil)
			req.AddCookie(cookie)
			rec := httptest.NewRecorder()
			p.con.ServeHTTP(rec, req)
			if rec.Code != 200 {
				b.Fatalf("overview: %d", rec.Code)
			}
			n = rec.Body.Len()
		}
		b.ReportMetric(float64(n), "bytes/page")
	})
	b.Run("console-overview-fragment", func(b *testing.B) {
		var n int
		for b.Loop() {
			req := httptest.NewRequest("GET", "/ui/", nil)
			req.AddCookie(cookie)
			req.Header.Set("X-Skiff-Fragment", "1")
			rec := httptest.NewRecorder()
			p.con.ServeHTTP(rec, req)
			n = rec.Body.Len()
		}
		b.ReportMetric(float64(n), "bytes/page")
	})
	b.Run("baseline-api-list-pods", func(b *testing.B) {
		var n int
		for b.Loop() {
			rec := httptest.NewRecorder()
			p.api.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/pods", nil))
			n = rec.Body.Len()
		}
		b.ReportMetric(float64(n), "bytes/page")
	})
}

// heapInUse is the live heap after a collection.
func heapInUse() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// BenchmarkTenConsoles measures the heap that 10 open consoles following
// the live stream add to the server (client and server share the process:
// the figure includes both ends' connection buffers, so it is an upper
// bound), beside 10 raw API watch streams (GET /v1/pods?watch=1).
func BenchmarkTenConsoles(b *testing.B) {
	p := newInproc(b)
	fill(b, p)
	cookie := sessionCookie(b, p)
	tok, _ := p.token(api.RoleRead)
	bearer := tok[strings.Index(tok, "::")+2:]
	open := func(path string, hdr func(*http.Request)) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		var bodies []func()
		for range 10 {
			req, _ := http.NewRequestWithContext(ctx, "GET", p.srv.URL+path, nil)
			hdr(req)
			c := p.srv.Client()
			c.Transport.(*http.Transport).MaxConnsPerHost = 0
			resp, err := c.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("GET %s: %d", path, resp.StatusCode)
			}
			if strings.HasPrefix(path, "/ui/") { // the console's stream says hello at once
				if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
					b.Fatal(err)
				}
			}
			bodies = append(bodies, func() { resp.Body.Close() })
		}
		return func() {
			cancel()
			for _, c := range bodies {
				c()
			}
		}
	}
	measure := func(name, path string, hdr func(*http.Request)) {
		var added []float64
		for range 5 {
			before := heapInUse()
			stop := open(path, hdr)
			time.Sleep(200 * time.Millisecond) // let the streams' goroutines settle before the measurement, not a condition
			after := heapInUse()
			stop()
			added = append(added, float64(after)-float64(before))
		}
		b.Logf("%s: heap added by 10 streams, 5 runs (KB): %v", name, kb(added))
	}
	for b.Loop() {
		measure("console /ui/live", "/ui/live", func(r *http.Request) { r.AddCookie(cookie) })
		measure("baseline API watch", "/v1/pods?watch=1", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+bearer) })
	}
}

func kb(v []float64) []int {
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x / 1024)
	}
	return out
}
