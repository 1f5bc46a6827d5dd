package cli

import (
	"testing"
	"time"
)

func TestFormatAge(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0s"},
		{0, "0s"},
		{45 * time.Second, "45s"},
		{119 * time.Second, "119s"},
		{3*time.Minute + 5*time.Second, "3m5s"},
		{4 * time.Minute, "4m"},
		{42 * time.Minute, "42m"},
		{5*time.Hour + 7*time.Minute, "5h7m"},
		{20*time.Hour + 7*time.Minute, "20h"},
		{5 * 24 * time.Hour, "5d"},
		{800 * 24 * time.Hour, "2y"},
	}
	for _, tt := range tests {
		t.Run(tt.d.String(), func(t *testing.T) {
			if got := FormatAge(tt.d); got != tt.want {
				t.Errorf("FormatAge(%s) = %q, want %q", tt.d, got, tt.want)
			}
		})
	}
}

func TestFormatUnits(t *testing.T) {
	tests := []struct {
		name, got, want string
	}{
		{"cpu zero", FormatCPU(0), "0"},
		{"cpu whole", FormatCPU(2000), "2"},
		{"cpu milli", FormatCPU(250), "250m"},
		{"cpu fraction", FormatCPU(1500), "1.5"},
		{"bytes small", FormatBytes(512), "512"},
		{"bytes Mi", FormatBytes(64 << 20), "64Mi"},
		{"bytes Gi fraction", FormatBytes(3 << 29), "1.5Gi"},
		{"labels none", FormatLabels(nil), "<none>"},
		{"labels sorted", FormatLabels(map[string]string{"z": "1", "a": "2"}), "a=2,z=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}
