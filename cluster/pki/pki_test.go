package pki

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
)

const hash64 = "ab12000000000000000000000000000000000000000000000000000000000000"

func TestParseToken(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Token
		wantErr string
	}{
		{name: "ok", in: "K10" + hash64 + "::0123456789abcdef", want: Token{CAHash: hash64, Secret: "0123456789abcdef"}},
		{name: "newline of a token file", in: "K10" + hash64 + "::0123456789abcdef\n", want: Token{CAHash: hash64, Secret: "0123456789abcdef"}},
		{name: "upper-case hash", in: "K10" + strings.ToUpper(hash64) + "::0123456789abcdef", want: Token{CAHash: hash64, Secret: "0123456789abcdef"}},
		{name: "secret with colons", in: "K10" + hash64 + "::server:0123456789abcdef", want: Token{CAHash: hash64, Secret: "server:0123456789abcdef"}},
		{name: "empty", in: "", wantErr: "empty"},
		{name: "bare secret", in: "0123456789abcdef", wantErr: "does not start with K10"},
		{name: "no separator", in: "K10" + hash64 + "0123456789abcdef", wantErr: `no "::"`},
		{name: "short hash", in: "K10ab12::0123456789abcdef", wantErr: "4 characters, want 64"},
		{name: "hash not hex", in: "K10" + strings.Repeat("z", 64) + "::0123456789abcdef", wantErr: "not hexadecimal"},
		{name: "short secret", in: "K10" + hash64 + "::short", wantErr: "secret has 5 characters"},
		{name: "space in secret", in: "K10" + hash64 + "::0123456789 abcdef", wantErr: "space"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseToken(tt.in)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrBadToken) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want ErrBadToken with %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "0123456789") {
					t.Errorf("the error echoes the secret: %v", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
			if again, err := ParseToken(got.String()); err != nil || again != got {
				t.Errorf("round trip: %+v, %v", again, err)
			}
		})
	}
}

// TestGossipKey: the gossip key is random, kept across restarts in a
// 0600 file, and owes nothing to the join secret (rotating the secret
// keeps it).
func TestGossipKey(t *testing.T) {
	dir := t.TempDir()
	p1, err := Load(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := Load(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(p1.GossipKey()) != 32 || bytes.Equal(p1.GossipKey(), other.GossipKey()) {
		t.Fatal("the gossip key is not a fresh 32-byte key")
	}
	if fi, err := os.Stat(filepath.Join(dir, GossipKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("gossip key file: %v %v", fi, err)
	}
	if _, err := p1.RotateSecret(); err != nil {
		t.Fatal(err)
	}
	p2, err := Load(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p1.GossipKey(), p2.GossipKey()) {
		t.Error("the gossip key changed across a restart or a secret rotation")
	}
}

// TestRotateSecret: the new secret works at once and is what ReadToken
// prints; the old one stops working; the CA stays.
func TestRotateSecret(t *testing.T) {
	dir := t.TempDir()
	p, err := Load(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	old := p.Token()
	tok, err := p.RotateSecret()
	if err != nil {
		t.Fatal(err)
	}
	if tok.Secret == old.Secret || tok.CAHash != old.CAHash || p.Token() != tok {
		t.Fatalf("rotated %+v from %+v", tok, old)
	}
	if p.CheckSecret(old.Secret) || !p.CheckSecret(tok.Secret) {
		t.Error("CheckSecret after the rotation")
	}
	if s, err := ReadToken(dir); err != nil || s != tok.String() {
		t.Errorf("ReadToken = %q, %v; want the new token", s, err)
	}
}

func TestLoadPersists(t *testing.T) {
	dir := t.TempDir()
	p1, err := Load(dir, []string{"10.0.0.5"})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{CAKeyFile, ServerKeyFile, SecretFile, GossipKeyFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v mode %v, want 0600", f, err, fi.Mode().Perm())
		}
	}
	if !slices.Contains(p1.Hosts(), "10.0.0.5") || !slices.Contains(p1.Hosts(), "127.0.0.1") || !slices.Contains(p1.Hosts(), "localhost") {
		t.Errorf("SANs %v", p1.Hosts())
	}
	serving1, _ := os.ReadFile(filepath.Join(dir, ServerCertFile))

	p2, err := Load(dir, []string{"10.0.0.5"})
	if err != nil {
		t.Fatal(err)
	}
	if p1.Token() != p2.Token() {
		t.Errorf("the token changed across a restart")
	}
	if tok, err := ReadToken(dir); err != nil || tok != p1.Token().String() {
		t.Errorf("ReadToken = %q, %v", tok, err)
	}
	serving2, _ := os.ReadFile(filepath.Join(dir, ServerCertFile))
	if !bytes.Equal(serving1, serving2) {
		t.Errorf("the serving certificate was issued again with the same addresses")
	}

	// An address change issues a new serving certificate under the same CA.
	p3, err := Load(dir, []string{"10.0.0.6"})
	if err != nil {
		t.Fatal(err)
	}
	serving3, _ := os.ReadFile(filepath.Join(dir, ServerCertFile))
	if bytes.Equal(serving1, serving3) || slices.Contains(p3.Hosts(), "10.0.0.5") || !slices.Contains(p3.Hosts(), "10.0.0.6") {
		t.Errorf("after an address change: SANs %v", p3.Hosts())
	}
	if p3.Token() != p1.Token() {
		t.Errorf("an address change changed the token")
	}
	if !p3.CheckSecret(p1.Token().Secret) || p3.CheckSecret("nope") {
		t.Errorf("CheckSecret")
	}
}

// tlsServer starts an httptest TLS server with p's certificates and
// counts the requests its handler sees.
func tlsServer(t *testing.T, p *PKI) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var calls atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if !p.CheckSecret(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")) {
			http.Error(w, "bad secret", http.StatusUnauthorized)
			return
		}
		_, _ = w.Write(p.GossipKey())
	}))
	srv.TLS = p.ServerTLSConfig()
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, &calls
}

func get(t *testing.T, url string, tok Token) (*http.Response, error) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: ClientTLSConfig(tok)}}
	t.Cleanup(client.CloseIdleConnections)
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+tok.Secret)
	resp, err := client.Do(req)
	if resp != nil {
		t.Cleanup(func() { _ = resp.Body.Close() })
	}
	return resp, err
}

func TestClientTLS(t *testing.T) {
	p, err := Load(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := Load(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, calls := tlsServer(t, p)

	t.Run("right token connects", func(t *testing.T) {
		tok, err := ParseToken(p.Token().String())
		if err != nil {
			t.Fatal(err)
		}
		before := calls.Load()
		for _, url := range []string{srv.URL, strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)} {
			resp, err := get(t, url, tok)
			if err != nil {
				t.Fatalf("%s: %v", url, err)
			}
			var body bytes.Buffer
			_, _ = body.ReadFrom(resp.Body)
			if resp.StatusCode != 200 || !bytes.Equal(body.Bytes(), p.GossipKey()) {
				t.Errorf("%s: status %d, body differs from the gossip key", url, resp.StatusCode)
			}
		}
		if calls.Load() != before+2 {
			t.Errorf("handler calls %d, want %d", calls.Load(), before+2)
		}
	})

	t.Run("token of another CA is refused before any request", func(t *testing.T) {
		before := calls.Load()
		_, err := get(t, srv.URL, other.Token())
		var mismatch *CAMismatchError
		if !errors.Is(err, ErrCAMismatch) || !errors.As(err, &mismatch) {
			t.Fatalf("err = %v, want a CA mismatch", err)
		}
		if mismatch.Expected != other.Token().CAHash || mismatch.Got != p.Token().CAHash {
			t.Errorf("mismatch %+v", mismatch)
		}
		if !strings.Contains(err.Error(), "expected sha256 "+other.Token().CAHash[:12]) {
			t.Errorf("message: %v", err)
		}
		if calls.Load() != before {
			t.Errorf("the handler saw %d requests", calls.Load()-before)
		}
		t.Logf("error: %v", err)
	})

	t.Run("right CA, wrong secret is refused by the server", func(t *testing.T) {
		tok := p.Token()
		tok.Secret = "0000000000000000wrong"
		resp, err := get(t, srv.URL, tok)
		if err != nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("resp %v err %v, want 401", resp, err)
		}
	})

	t.Run("a server that sends no CA is refused", func(t *testing.T) {
		leafOnly := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
			t.Error("handler called")
		}))
		inner, _ := p.ServerTLSConfig().GetConfigForClient(nil)
		leaf := inner.Certificates[0]
		leaf.Certificate = leaf.Certificate[:1]
		leafOnly.TLS = &tls.Config{Certificates: []tls.Certificate{leaf}}
		leafOnly.StartTLS()
		t.Cleanup(leafOnly.Close)
		if _, err := get(t, leafOnly.URL, p.Token()); !errors.Is(err, ErrNoCAInChain) {
			t.Errorf("err = %v, want ErrNoCAInChain", err)
		}
	})
}

// A rotation through the API and the follower of the store's record may
// change the join secret at the same moment: every change succeeds (they
// used to share one temp file, and one's rename took the other's file:
// "chmod join-secret.tmp: no such file or directory"), and the file ends
// with the secret in memory, with no temp file left.
func TestSecretChangesAtOnce(t *testing.T) {
	dir := t.TempDir()
	p, err := Load(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 400)
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 100 {
				if g%2 == 0 {
					_, err := p.RotateSecret()
					errs <- err
				} else {
					errs <- p.SetSecret(NewJoinSecret() + strings.Repeat("x", i%2))
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, SecretFile))
	if err != nil || strings.TrimSpace(string(b)) != p.JoinSecret() {
		t.Errorf("file %q (%v), in memory %q: want the same", b, err, p.JoinSecret())
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temp file left: %s", e.Name())
		}
	}
}
