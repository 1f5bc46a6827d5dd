package apiserver

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// metrics writes the Prometheus text format by hand: a handful of gauges
// and one counter do not justify client_golang's weight in an edge binary.
func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	b := bufio.NewWriter(w)
	defer b.Flush()

	fmt.Fprintf(b, "# HELP skiff_store_revision Current revision of the state store.\n# TYPE skiff_store_revision gauge\nskiff_store_revision %d\n", s.st.Rev())
	fmt.Fprintf(b, "# HELP skiff_store_watchers Open watches on the store.\n# TYPE skiff_store_watchers gauge\nskiff_store_watchers %d\n", s.st.Watchers())
	fmt.Fprintf(b, "# HELP skiff_objects Objects in the store by kind.\n# TYPE skiff_objects gauge\n")
	for _, kind := range []string{api.KindNode, api.KindApp, api.KindPod, api.KindService, api.KindEndpoints, api.KindEvent} {
		if n, err := s.st.Count(kind); err == nil {
			fmt.Fprintf(b, "skiff_objects{kind=%q} %d\n", kind, n)
		}
	}

	s.metricsMu.Lock()
	keys := make([]requestKey, 0, len(s.requests))
	for k := range s.requests {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b requestKey) int {
		if c := strings.Compare(a.method, b.method); c != 0 {
			return c
		}
		return a.code - b.code
	})
	fmt.Fprintf(b, "# HELP skiff_api_requests_total API requests by method and status code.\n# TYPE skiff_api_requests_total counter\n")
	for _, k := range keys {
		fmt.Fprintf(b, "skiff_api_requests_total{method=%q,code=\"%d\"} %d\n", k.method, k.code, s.requests[k])
	}
	s.metricsMu.Unlock()

	fmt.Fprintf(b, "# HELP go_goroutines Number of goroutines.\n# TYPE go_goroutines gauge\ngo_goroutines %d\n", runtime.NumGoroutine())
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Fprintf(b, "# HELP go_memstats_heap_inuse_bytes Bytes in in-use heap spans.\n# TYPE go_memstats_heap_inuse_bytes gauge\ngo_memstats_heap_inuse_bytes %d\n", ms.HeapInuse)
	fmt.Fprintf(b, "# HELP go_memstats_sys_bytes Bytes obtained from the OS.\n# TYPE go_memstats_sys_bytes gauge\ngo_memstats_sys_bytes %d\n", ms.Sys)
	if rss, ok := residentBytes(); ok {
		fmt.Fprintf(b, "# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %d\n", rss)
	}
}

// residentBytes reads this process's RSS from /proc.
func residentBytes() (int64, bool) {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(data))
	if len(f) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * int64(os.Getpagesize()), true
}
