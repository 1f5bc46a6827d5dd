// Command demo is the small HTTP server that skiff's examples and tests run
// in containers. It answers GET / with "hello from <hostname>" (the pod's
// name), GET /healthz with 200 while healthy, and lets a probe test make it
// unhealthy with POST /fail-health (or by creating the file named by
// -fail-file). POST /heal makes it healthy again. GET /burn?ms=N spins the
// CPU for N milliseconds (at most 1000), for the CPU autoscaling tests. It uses the standard library
// only and is built static (CGO_ENABLED=0) so that it runs in an image of one
// file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", ":8080", "address to listen on")
	failFile := flag.String("fail-file", "/tmp/fail-health", "health fails while this file exists")
	flag.Parse()

	host, _ := os.Hostname()
	var unhealthy atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", host)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if _, err := os.Stat(*failFile); err == nil || unhealthy.Load() {
			http.Error(w, "unhealthy", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("POST /fail-health", func(w http.ResponseWriter, r *http.Request) {
		unhealthy.Store(true)
		fmt.Fprintln(w, "health will fail")
	})
	mux.HandleFunc("POST /heal", func(w http.ResponseWriter, r *http.Request) {
		unhealthy.Store(false)
		fmt.Fprintln(w, "healthy")
	})
	mux.HandleFunc("GET /burn", func(w http.ResponseWriter, r *http.Request) {
		ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
		if err != nil || ms < 0 || ms > 1000 {
			http.Error(w, "ms: want 0 to 1000", http.StatusBadRequest)
			return
		}
		n := 0
		for end := time.Now().Add(time.Duration(ms) * time.Millisecond); time.Now().Before(end); {
			n++
		}
		fmt.Fprintf(w, "burned %dms in %s\n", ms, host)
	})
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Printf("demo listening on %s as %s", *listen, host)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	log.Print("demo stopped")
}
