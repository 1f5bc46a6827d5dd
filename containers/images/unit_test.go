package images

import (
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

func TestPlainHTTPOnlyForLoopbackAndInsecure(t *testing.T) {
	s := &Store{insecure: []string{"registry.local:5000"}}
	tests := []struct {
		ref  string
		want bool
	}{
		{"127.0.0.1:5000/x:1", true},
		{"localhost:5000/x:1", true},
		{"[::1]:5000/x:1", true},
		{"registry.local:5000/x:1", true},
		{"registry.local:5001/x:1", false},
		{"10.0.0.5:5000/x:1", false},
		{"192.168.1.2/x:1", false},
		{"docker.io/library/busybox", false},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			r, err := name.ParseReference(tt.ref)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.allowPlain(r.Context().Registry); got != tt.want {
				t.Errorf("allowPlain = %v, want %v", got, tt.want)
			}
		})
	}
}
