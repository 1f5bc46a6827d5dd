package images

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/skiff-edge/skiff/containers/images/imagetest"
)

// TestOCIRefNameDigest: an OCI archive's ref.name may name its image by
// digest only by the digest of that image's manifest. An annotation that
// claims another digest is refused, and so is an index that names a
// manifest by a digest its bytes do not have; nothing is stored.
func TestOCIRefNameDigest(t *testing.T) {
	requireRoot(t)
	img := tarImage(t, layerTar(t, file("mine", "attacker's content\n")))
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	victim := tarImage(t, layerTar(t, file("theirs", "the real content\n")))
	victimDigest, err := victim.Digest()
	if err != nil {
		t.Fatal(err)
	}
	t.Run("the manifest's digest", func(t *testing.T) {
		st := openStore(t, testConfig(t))
		ref := "localhost/x@" + digest.String()
		stored := importOCI(t, st, ociArchive(t, ref, img, nil))
		if len(stored) != 1 || stored[0].ManifestDigest != digest.String() {
			t.Fatalf("stored %+v", stored)
		}
		if got, err := st.Get(ref); err != nil || got.ManifestDigest != digest.String() {
			t.Errorf("get %s: %+v, %v", ref, got, err)
		}
	})
	for _, tt := range []struct {
		name   string
		ref    string
		tamper func(t *testing.T, name string, b []byte) (string, []byte)
		msg    string
	}{
		{"another digest", "localhost/x@" + victimDigest.String(), nil,
			`ref.name "localhost/x@` + victimDigest.String() + `": digest mismatch: it names ` + victimDigest.String() + ", the manifest is " + digest.String()},
		{"another digest, index and blob renamed to it", "localhost/x@" + victimDigest.String(),
			func(t *testing.T, name string, b []byte) (string, []byte) {
				// index.json and the blob's name say victimDigest; the
				// blob's bytes are still img's manifest.
				old := strings.TrimPrefix(digest.String(), "sha256:")
				if name == "blobs/sha256/"+old {
					return "blobs/sha256/" + strings.TrimPrefix(victimDigest.String(), "sha256:"), b
				}
				if name == "index.json" {
					return name, bytes.ReplaceAll(b, []byte(digest.String()), []byte(victimDigest.String()))
				}
				return name, b
			}, "manifest: digest mismatch (content is " + digest.String() + ")"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			st, kept := storeWithImage(t, cfg)
			_, err := st.Import(context.Background(), ociArchive(t, tt.ref, img, tt.tamper), nil)
			if err == nil {
				t.Fatal("imported; want the archive refused")
			}
			t.Logf("error: %v", err)
			if !errors.Is(err, ErrDigestMismatch) || !errors.Is(err, ErrBadArchive) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error is not a bad archive's digest mismatch saying %q", tt.msg)
			}
			if _, err := st.Get(tt.ref); !errors.Is(err, ErrImageNotPresent) {
				t.Errorf("get %s: %v, want ErrImageNotPresent", tt.ref, err)
			}
			assertStoreIntact(t, st, kept)
		})
	}
}

// ociArchive writes img as an OCI archive annotated ref and returns its
// path. tamper, if set, rewrites each entry (name and content).
func ociArchive(t *testing.T, ref string, img v1.Image, tamper func(t *testing.T, name string, b []byte) (string, []byte)) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "x.tar")
	if err := imagetest.WriteOCIArchive(path, ref, img); err != nil {
		t.Fatal(err)
	}
	if tamper == nil {
		return path
	}
	in, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	tr, tw := tar.NewReader(bytes.NewReader(in)), tar.NewWriter(&out)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		h.Name, b = tamper(t, h.Name, b)
		h.Size = int64(len(b))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(b)
	}
	tw.Close()
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func importOCI(t *testing.T, st *Store, path string) []Image {
	t.Helper()
	imgs, err := st.Import(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return imgs
}
