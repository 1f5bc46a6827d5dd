package netlb

import "testing"

// BenchmarkBuildRules1000x3 measures the in-memory part of a sync: building
// every chain and diffing it against the last applied state.
func BenchmarkBuildRules1000x3(b *testing.B) {
	cfg := goldenConfig()
	svcs, eps := benchServices(1000, 3)
	rs, err := buildRulesCached(&cfg, svcs, eps, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("cold", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			next, _ := buildRulesCached(&cfg, svcs, eps, nil)
			renderRestore(next, rs, false, nil)
		}
	})
	b.Run("one change, cached", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			eps["ns/svc-0500"][1].Port = 9000 + i%2
			next, _ := buildRulesCached(&cfg, svcs, eps, rs)
			renderRestore(next, rs, false, nil)
		}
	})
}
