package containers

import (
	"bufio"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFollowAcrossRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := openLogWriter(path, 8192, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	rc, err := readLogs(context.Background(), path, 2, LogOptions{Tail: 0, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	lines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(rc)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	for i := range 300 {
		w.copyLines("stdout", strings.NewReader(fmt.Sprintf("l%d\n", i)))
	}
	deadline := time.After(10 * time.Second)
	for i := 0; i < 300; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("follow ended after %d of 300 lines", i)
			}
			if !strings.HasSuffix(l, fmt.Sprintf(" stdout F l%d", i)) {
				// Only lines rotated out of the last file can be lost.
				t.Fatalf("line %d: %q", i, l)
			}
			i++
		case <-deadline:
			t.Fatalf("follow got %d of 300 lines", i)
		}
	}
}

func TestFollowAcrossWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w0, err := openLogWriter(path, 8192, 3)
	if err != nil {
		t.Fatal(err)
	}
	w0.Close()
	rc, err := readLogs(context.Background(), path, 3, LogOptions{Tail: 0, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	lines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(rc)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// Two runs back to back rotate twice before the reader polls again.
	for range 2 {
		w, err := openLogWriter(path, 8192, 3)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 200 {
			w.copyLines("stdout", strings.NewReader(fmt.Sprintf("run line %d\n", i)))
		}
		w.copyLines("stderr", strings.NewReader("done-run\n"))
		w.Close()
	}
	// Every line of both runs arrives once, in order.
	var want []string
	for range 2 {
		for i := range 200 {
			want = append(want, fmt.Sprintf(" stdout F run line %d", i))
		}
		want = append(want, " stderr F done-run")
	}
	deadline := time.After(5 * time.Second)
	for n := 0; n < len(want); {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("follow ended after %d of %d lines", n, len(want))
			}
			if !strings.HasSuffix(l, want[n]) {
				t.Fatalf("line %d: %q, want suffix %q", n, l, want[n])
			}
			n++
		case <-deadline:
			t.Fatalf("got %d of %d", n, len(want))
		}
	}
}
