package containers

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// BenchmarkStartLatency measures, in one run, the start latency of a
// one-container pod whose image is present (from the StartPod call to the
// container's process running, as StartContainer returns) against bare
// `runc run -d` of the same root filesystem (Debian's /usr/sbin/runc),
// and against the same start under the all-Go shim that the C shim
// replaced, alternating, 30 runs each. Run it with -benchtime=1x: the 30
// triples are one iteration. It reports the median and p90 of each in ms. skiff's
// container runs under Docker's seccomp profile, which `runc spec`'s bundle
// lacks: BenchmarkPodStart measures what that costs.
func BenchmarkStartLatency(b *testing.B) {
	requireRoot(b)
	runcBin, err := exec.LookPath("runc")
	if err != nil {
		b.Fatal("runc not found: install Debian's runc package")
	}
	reg := startRegistry(b)
	cfg := testConfig(b)
	r := openRuntime(b, cfg)
	ctx := context.Background()
	ref := reg.Addr + "/busybox:1"
	img, err := r.Images().Pull(ctx, ref, nil)
	if err != nil {
		b.Fatal(err)
	}
	gcfg := testConfig(b)
	gcfg.goShim = true
	rg := openRuntime(b, gcfg)
	if _, err := rg.Images().Pull(ctx, ref, nil); err != nil {
		b.Fatal(err)
	}
	// The bare runc bundle: the same unpacked layer as root (read-only, as
	// `runc spec` has it), the same command.
	bundle := b.TempDir()
	runcRoot := b.TempDir()
	if out, err := exec.Command(runcBin, "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		b.Fatalf("runc spec: %v: %s", err, out)
	}
	var spec map[string]any
	raw, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
	json.Unmarshal(raw, &spec)
	spec["root"] = map[string]any{"path": r.Images().LayerDir(img.Layers[0]), "readonly": true}
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = []string{"sleep", "600"}
	linux := spec["linux"].(map[string]any)
	linux["cgroupsPath"] = "/" + cfg.CgroupParent + "/runc"
	out, _ := json.Marshal(spec)
	os.WriteFile(filepath.Join(bundle, "config.json"), out, 0o644)
	devnull, _ := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	defer devnull.Close()

	const runs = 30
	for range b.N {
		var skiff, goShim, bare []time.Duration
		for i := range runs {
			pod := fmt.Sprintf("bench-%d", i)
			order := []*Runtime{r, rg}
			if i%2 == 1 { // neither shim always follows runc's delete
				order = []*Runtime{rg, r}
			}
			for _, rt := range order {
				t0 := time.Now()
				if err := rt.StartPod(ctx, PodConfig{Name: pod}); err != nil {
					b.Fatal(err)
				}
				if _, err := rt.StartContainer(ctx, pod, ContainerConfig{Name: "c", Image: ref, Command: []string{"sleep", "600"}}); err != nil {
					b.Fatal(err)
				}
				if rt == r {
					skiff = append(skiff, time.Since(t0))
				} else {
					goShim = append(goShim, time.Since(t0))
				}
				if err := rt.RemovePod(ctx, pod, 0); err != nil {
					b.Fatal(err)
				}
			}

			id := fmt.Sprintf("skiff-bench-%s-%d", randSuffix(), i)
			cmd := exec.Command(runcBin, "--root", runcRoot, "run", "-d", "--bundle", bundle, id)
			cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
			t0 := time.Now()
			if err := cmd.Run(); err != nil {
				b.Fatalf("runc run: %v", err)
			}
			bare = append(bare, time.Since(t0))
			if out, err := exec.Command(runcBin, "--root", runcRoot, "delete", "-f", id).CombinedOutput(); err != nil {
				b.Fatalf("runc delete: %v: %s", err, out)
			}
		}
		sm, sp := medianP90(skiff)
		bm, bp := medianP90(bare)
		gm, gp := medianP90(goShim)
		b.ReportMetric(ms(sm), "skiff-median-ms")
		b.ReportMetric(ms(sp), "skiff-p90-ms")
		b.ReportMetric(ms(gm), "goshim-median-ms")
		b.ReportMetric(ms(gp), "goshim-p90-ms")
		b.ReportMetric(ms(bm), "runc-median-ms")
		b.ReportMetric(ms(bp), "runc-p90-ms")
		b.ReportMetric(float64(sm)/float64(bm), "ratio-median")
		b.ReportMetric(float64(sm)/float64(gm), "ratio-c-vs-goshim-median")
		b.Logf("%d runs each: skiff (C shim) median %.1f ms p90 %.1f ms (min %.1f max %.1f); skiff with the Go shim median %.1f ms p90 %.1f ms; runc run -d median %.1f ms p90 %.1f ms (min %.1f max %.1f)",
			runs, ms(sm), ms(sp), ms(slices.Min(skiff)), ms(slices.Max(skiff)), ms(gm), ms(gp), ms(bm), ms(bp), ms(slices.Min(bare)), ms(slices.Max(bare)))
	}
}

// BenchmarkPodStart measures the start of a one-container pod whose image
// is present (StartPod and StartContainer, until the container's process
// runs) under Docker's default seccomp profile against unconfined. Each
// iteration starts one pod of each, in alternating order, so that drift
// and the noise of a shared machine fall on both alike; pods are removed
// untimed. The filter is compiled by libseccomp in the container's init,
// so its cost is in the figure. It reports the median and p90 of each in
// ms and the ratio of the medians; run it with -benchtime=30x -count 5.
func BenchmarkPodStart(b *testing.B) {
	requireRoot(b)
	reg := startRegistry(b)
	r := openRuntime(b, testConfig(b))
	ctx := context.Background()
	ref := reg.Addr + "/busybox:1"
	if _, err := r.Images().Pull(ctx, ref, nil); err != nil {
		b.Fatal(err)
	}
	took := map[SeccompProfile][]time.Duration{}
	start := func(i int, profile SeccompProfile) {
		pod := fmt.Sprintf("bench-%s-%d", profile, i)
		t0 := time.Now()
		if err := r.StartPod(ctx, PodConfig{Name: pod}); err != nil {
			b.Fatal(err)
		}
		if _, err := r.StartContainer(ctx, pod, ContainerConfig{Name: "c", Image: ref, Command: []string{"sleep", "600"}, Seccomp: profile}); err != nil {
			b.Fatal(err)
		}
		took[profile] = append(took[profile], time.Since(t0))
		if err := r.RemovePod(ctx, pod, 0); err != nil {
			b.Fatal(err)
		}
	}
	start(-1, SeccompDefault) // builds the cached profile, untimed
	took = map[SeccompProfile][]time.Duration{}
	b.ResetTimer()
	for i := range b.N {
		if i%2 == 0 {
			start(i, SeccompDefault)
			start(i, SeccompUnconfined)
		} else {
			start(i, SeccompUnconfined)
			start(i, SeccompDefault)
		}
	}
	b.StopTimer()
	dm, dp := medianP90(took[SeccompDefault])
	um, up := medianP90(took[SeccompUnconfined])
	b.ReportMetric(ms(dm), "default-median-ms")
	b.ReportMetric(ms(dp), "default-p90-ms")
	b.ReportMetric(ms(um), "unconfined-median-ms")
	b.ReportMetric(ms(up), "unconfined-p90-ms")
	b.ReportMetric(float64(dm)/float64(um), "ratio-median")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func medianP90(d []time.Duration) (time.Duration, time.Duration) {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2], s[(len(s)*9+9)/10-1]
}

// BenchmarkShimPSS measures what skiff adds per running container, the
// memory of its shim, for the C shim and the all-Go shim it replaced, in
// one run: for 1, 10 and 30 one-container pods (sleep 600) under each
// shim in turn, it reads every shim's /proc/PID/smaps_rollup and reports
// the median Pss (shared pages divided among the processes that map them,
// so many identical shims share their text) and the median private memory
// (Private_Clean + Private_Dirty), in KB. Run it with -benchtime=1x. The
// shims are the test binary re-executed, unless SKIFF_BENCH_SHIM_PATH names
// a skiff binary (bench/pss.sh builds one) to re-execute instead.
func BenchmarkShimPSS(b *testing.B) {
	requireRoot(b)
	reg := startRegistry(b)
	ctx := context.Background()
	ref := reg.Addr + "/busybox:1"
	runtimes := map[string]*Runtime{}
	for _, shim := range []string{"go", "c"} {
		cfg := testConfig(b)
		cfg.goShim = shim == "go"
		if p := os.Getenv("SKIFF_BENCH_SHIM_PATH"); p != "" {
			cfg.ShimPath = p // a skiff binary: the shims as they run on a node
		}
		r := openRuntime(b, cfg)
		if _, err := r.Images().Pull(ctx, ref, nil); err != nil {
			b.Fatal(err)
		}
		runtimes[shim] = r
	}
	for range b.N {
		for _, n := range []int{1, 10, 30} {
			for _, shim := range []string{"go", "c"} {
				r := runtimes[shim]
				var pss, priv []int
				for i := range n {
					pod := fmt.Sprintf("pss-%d", i)
					if err := r.StartPod(ctx, PodConfig{Name: pod}); err != nil {
						b.Fatal(err)
					}
					if _, err := r.StartContainer(ctx, pod, ContainerConfig{Name: "c", Image: ref, Command: []string{"sleep", "600"}}); err != nil {
						b.Fatal(err)
					}
				}
				r.mu.Lock()
				var shims []int
				for _, k := range r.ctrs {
					shims = append(shims, k.rec.ShimPID)
				}
				r.mu.Unlock()
				for _, pid := range shims {
					p, v, err := smapsRollup(pid)
					if err != nil {
						b.Fatal(err)
					}
					pss, priv = append(pss, p), append(priv, v)
				}
				slices.Sort(pss)
				slices.Sort(priv)
				sum := 0
				for _, p := range pss {
					sum += p
				}
				b.ReportMetric(float64(pss[len(pss)/2]), fmt.Sprintf("%s-n%d-pss-kB", shim, n))
				b.ReportMetric(float64(priv[len(priv)/2]), fmt.Sprintf("%s-n%d-private-kB", shim, n))
				b.Logf("%s shim, %2d containers: Pss per shim median %d kB (min %d, max %d), total %d kB; private median %d kB",
					shim, n, pss[len(pss)/2], pss[0], pss[len(pss)-1], sum, priv[len(priv)/2])
				for i := range n {
					if err := r.RemovePod(ctx, fmt.Sprintf("pss-%d", i), 0); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
	}
}

// smapsRollup returns a process's Pss and private memory, in kB.
func smapsRollup(pid int) (pss, private int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		var key string
		var v int
		if n, _ := fmt.Sscanf(l, "%s %d kB", &key, &v); n != 2 {
			continue
		}
		switch key {
		case "Pss:":
			pss = v
		case "Private_Clean:", "Private_Dirty:":
			private += v
		}
	}
	if pss == 0 {
		return 0, 0, fmt.Errorf("no Pss in /proc/%d/smaps_rollup", pid)
	}
	return pss, private, nil
}
