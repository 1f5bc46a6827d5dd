package configs

import (
	"encoding/json"
	"math"
	"reflect"
	"testing"
	"time"
)

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestUnitsJSON(t *testing.T) {
	type units struct {
		D Duration `json:"d,omitempty"`
		B Bytes    `json:"b,omitempty"`
		P PortRef  `json:"p,omitzero"`
	}
	tests := []struct {
		name string
		v    units
		json string
	}{
		{"zero", units{}, `{}`},
		{"number port", units{D: Duration(1500 * time.Millisecond), B: 64 << 20, P: PortRef{Number: 8080}}, `{"d":"1.5s","b":"64Mi","p":8080}`},
		{"named port", units{D: Duration(90 * time.Second), B: 1000, P: PortRef{Name: "http"}}, `{"d":"1m30s","b":"1000","p":"http"}`},
		{"large sizes", units{B: 3 << 40}, `{"b":"3Ti"}`},
		{"largest size", units{B: math.MaxInt64}, `{"b":"9223372036854775807"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.json {
				t.Errorf("Marshal = %s, want %s", b, tt.json)
			}
			var back units
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if back != tt.v {
				t.Errorf("round trip = %+v, want %+v", back, tt.v)
			}
		})
	}
}

func TestUnitsUnmarshalJSON(t *testing.T) {
	type units struct {
		D Duration `json:"d"`
		B Bytes    `json:"b"`
		P PortRef  `json:"p"`
	}
	tests := []struct {
		name    string
		json    string
		want    units
		wantErr bool
	}{
		{"strings", `{"d":"2s","b":"1Gi","p":"http"}`, units{D: Duration(2 * time.Second), B: 1 << 30, P: PortRef{Name: "http"}}, false},
		{"numbers", `{"b":4096,"p":80}`, units{B: 4096, P: PortRef{Number: 80}}, false},
		{"port number in a string", `{"p":"443"}`, units{P: PortRef{Number: 443}}, false},
		{"nulls", `{"d":null,"b":null,"p":null}`, units{}, false},
		{"bad size", `{"b":"64MB"}`, units{}, true},
		{"bad duration", `{"d":"soon"}`, units{}, true},
		{"duration as number", `{"d":5}`, units{}, true},
		{"port as float", `{"p":80.5}`, units{}, true},
		{"port as bool", `{"p":true}`, units{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got units
			err := json.Unmarshal([]byte(tt.json), &got)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestManifestJSONRoundTrip sends every good manifest through JSON, as the
// CLI does to the API, and expects the same specs back.
func TestManifestJSONRoundTrip(t *testing.T) {
	for _, file := range []string{"testdata/good/design.toml", "testdata/good/full.toml", "testdata/good/minimal.toml"} {
		t.Run(file, func(t *testing.T) {
			m := parseGood(t, file)
			b, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			var back Manifest
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(&back, m) {
				t.Errorf("round trip differs:\n%s\n%s", mustJSON(t, m), mustJSON(t, &back))
			}
			if err := back.Validate(); err != nil {
				t.Errorf("Validate after round trip: %v", err)
			}
		})
	}
}

func TestBytesText(t *testing.T) {
	tests := []struct {
		in      string
		want    Bytes
		wantErr string
	}{
		{"64Mi", 64 << 20, ""}, {"1Gi", 1 << 30, ""}, {"512Ki", 512 << 10, ""}, {"100", 100, ""}, {"0", 0, ""},
		{"64MB", 0, `"64MB" is not a size (use 64Mi)`},
		{"64M", 0, `"64M" is not a size (use 64Mi)`},
		{"2g", 0, `"2g" is not a size (use 2Gi)`},
		{"10kb", 0, `"10kb" is not a size (use 10Ki)`},
		{"-1Mi", 0, `"-1Mi" is not a size (use 64Mi)`},
		{"", 0, `"" is not a size (use 64Mi)`},
		{"99999999999Ti", 0, `"99999999999Ti" is not a size (use 64Mi)`},
		{"9223372036854775807", math.MaxInt64, ""},
		{"8388607Ti", 8388607 << 40, ""},
		{"8388608Ti", 0, `"8388608Ti" is not a size (use 64Mi)`},
	}
	for _, tt := range tests {
		var b Bytes
		err := b.UnmarshalText([]byte(tt.in))
		switch {
		case tt.wantErr == "" && (err != nil || b != tt.want):
			t.Errorf("UnmarshalText(%q) = %d, %v; want %d", tt.in, b, err, tt.want)
		case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
			t.Errorf("UnmarshalText(%q) error = %v, want %q", tt.in, err, tt.wantErr)
		}
	}
}
