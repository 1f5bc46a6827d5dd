package netlb

import (
	"strings"
	"testing"
)

func TestCleanupRestore(t *testing.T) {
	cases := []struct {
		name         string
		saved        string
		want         string
		wantNonEmpty map[string]bool
	}{
		{
			name: "only ours",
			saved: "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:SKIFF-SERVICES - [0:0]\n:SKIFF-SVC-X - [0:0]\n" +
				"-A PREROUTING -m comment --comment \"skiff services\" -j SKIFF-SERVICES\n" +
				"-A SKIFF-SERVICES -d 10.96.0.1/32 -j SKIFF-SVC-X\nCOMMIT\n",
			want: "*nat\n:SKIFF-SERVICES - [0:0]\n:SKIFF-SVC-X - [0:0]\n" +
				"-D PREROUTING -m comment --comment \"skiff services\" -j SKIFF-SERVICES\n" +
				"-X SKIFF-SERVICES\n-X SKIFF-SVC-X\nCOMMIT\n",
			wantNonEmpty: map[string]bool{},
		},
		{
			name: "someone else's rules and chains stay",
			saved: "*filter\n:INPUT DROP [0:0]\n:DOCKER - [0:0]\n:SKIFF-FILTER - [0:0]\n" +
				"-A INPUT -j SKIFF-FILTER\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n",
			want:         "*filter\n:SKIFF-FILTER - [0:0]\n-D INPUT -j SKIFF-FILTER\n-X SKIFF-FILTER\nCOMMIT\n",
			wantNonEmpty: map[string]bool{"filter": true},
		},
		{
			name:         "nothing of ours",
			saved:        "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n",
			want:         "",
			wantNonEmpty: map[string]bool{},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, nonEmpty, err := cleanupRestore([]byte(tc.saved))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("restore text:\ngot:\n%s\nwant:\n%s", got, tc.want)
			}
			if len(nonEmpty) != len(tc.wantNonEmpty) {
				t.Errorf("nonEmpty = %v, want %v", nonEmpty, tc.wantNonEmpty)
			}
			for k := range tc.wantNonEmpty {
				if !nonEmpty[k] {
					t.Errorf("nonEmpty = %v, want %v", nonEmpty, tc.wantNonEmpty)
				}
			}
		})
	}
}

// TestSavedOutputTooLong: iptables-save output that cannot be read whole is
// an error for both readers, not a shorter list of chains and rules.
func TestSavedOutputTooLong(t *testing.T) {
	saved := "*nat\n:SKIFF-SERVICES - [0:0]\n-A INPUT -m comment --comment \"" + strings.Repeat("x", 2<<20) + "\" -j ACCEPT\n" +
		"-A PREROUTING -j SKIFF-SERVICES\nCOMMIT\n"
	if _, _, err := cleanupRestore([]byte(saved)); err == nil {
		t.Error("cleanupRestore: no error")
	}
	if _, _, err := parseSaved([]byte(saved)); err == nil {
		t.Error("parseSaved: no error")
	}
}
