package apiserver

import (
	"testing"
)

// FuzzAPIBodies feeds arbitrary bodies to the write routes of an in-process
// server: no panic, no 5xx, and a refused write never changes the store.
func FuzzAPIBodies(f *testing.F) {
	routes := []struct{ method, path string }{
		{"PUT", "/v1/pods/web-1"},
		{"PUT", "/v1/pods/web-1/status"},
		{"PUT", "/v1/nodes/n1"},
		{"POST", "/v1/events"},
		{"PUT", "/v1/apps/web"},
		{"POST", "/v1/apply"},
		{"PUT", "/v1/services/web"},
		{"POST", "/v1/apps/web/scale"},
	}
	for i := range routes {
		f.Add(uint8(i), goodPod)
		f.Add(uint8(i), `{"spec":{"app":"web","containers":{"../../x":{"image":"echo:1","cpu":1e300}}}}`)
		f.Add(uint8(i), `{"status":{"phase":"Running","containers":[{"name":"http","restarts":-1}]}}`)
		f.Add(uint8(i), `{"status":{"capacity":{"milli_cpu":-1}}}`)
		f.Add(uint8(i), `{"object":"pods/web-1","type":"Normal","reason":"x","message":"m"}`)
		f.Add(uint8(i), `{"apps":{"web":{"containers":{"http":{"image":"echo:1"}}}}}`)
		f.Add(uint8(i), `{"spec":{"app":"web","port":80}}`)
		f.Add(uint8(i), `{"replicas":3}`)
	}
	f.Fuzz(func(t *testing.T, route uint8, body string) {
		s, st := newTestServer(t, "10.96.0.0/16")
		seedPod(t, s, st)
		r := routes[int(route)%len(routes)]
		before := st.Rev()
		rec := serve(s, r.method, r.path, body)
		if rec.Code >= 500 {
			t.Fatalf("%s %s %q: %d %s", r.method, r.path, body, rec.Code, rec.Body)
		}
		if rec.Code >= 400 && st.Rev() != before {
			t.Fatalf("%s %s %q: refused with %d but the store went from revision %d to %d", r.method, r.path, body, rec.Code, before, st.Rev())
		}
	})
}
