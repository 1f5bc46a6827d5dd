package apiserver

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Secrets are sealed with AES-256-GCM before they reach the store. The keys
// live in a file of the server's data dir (SecretKeyFile, mode 0600), one a
// line: "KEYID HEX32BYTES". The first line is the active key, which seals;
// every line's key opens what it sealed. Each sealed value starts with the
// id of its key, so that keys can be rotated: put a new line first, restart
// the server (it re-seals every secret with the new key at start), then
// drop the old line. A server creates the file with one random key when it
// is missing. Several servers must hold the same file.

// SecretKeyFile is the key file's name in the data dir.
const SecretKeyFile = "secret-keys"

// sealMagic starts every sealed value (format version 1).
const sealMagic = "skv1"

var keyIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// SecretKeys is the keyring that seals secrets. It is read once and never
// changed.
type SecretKeys struct {
	active string
	aeads  map[string]cipher.AEAD
	// path is the file LoadSecretKeys read ("" for keys made in
	// memory): GET /v1/snapshot finds the data dir beside it.
	path string
}

// errSealed: a sealed value that no key opens, or not a sealed value.
var errSealed = errors.New("cannot open sealed secret")

// newRandomKeys is a keyring of one fresh key, for a server without a key
// file (tests): what it seals does not outlive the process.
func newRandomKeys() *SecretKeys {
	k := make([]byte, 32)
	rand.Read(k)
	ks, err := keysFrom([]keyLine{{id: "mem", key: k}})
	if err != nil {
		panic(err) // a 32-byte key always makes an AES-GCM
	}
	return ks
}

type keyLine struct {
	id  string
	key []byte
}

func keysFrom(lines []keyLine) (*SecretKeys, error) {
	ks := &SecretKeys{aeads: map[string]cipher.AEAD{}}
	for i, l := range lines {
		block, err := aes.NewCipher(l.key)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		if _, dup := ks.aeads[l.id]; dup {
			return nil, fmt.Errorf("key id %q appears twice", l.id)
		}
		ks.aeads[l.id] = aead
		if i == 0 {
			ks.active = l.id
		}
	}
	return ks, nil
}

// LoadSecretKeys reads the key file at path, or creates it (0600) with one
// random key when it does not exist. A file readable by others than its
// owner is refused.
func LoadSecretKeys(path string) (*SecretKeys, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		k := make([]byte, 32)
		rand.Read(k)
		id := make([]byte, 4)
		rand.Read(id)
		line := fmt.Sprintf("%s %s\n", hex.EncodeToString(id), hex.EncodeToString(k))
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		if err := writeNew(path, []byte(line)); err != nil {
			return nil, fmt.Errorf("secret keys: %w", err)
		}
		b = []byte(line)
	} else if err != nil {
		return nil, fmt.Errorf("secret keys: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("secret keys %s: mode %o, want 0600 (readable by its owner only)", path, fi.Mode().Perm())
	}
	var lines []keyLine
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		t := strings.TrimSpace(sc.Text())
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		f := strings.Fields(t)
		if len(f) != 2 || !keyIDRE.MatchString(f[0]) {
			return nil, fmt.Errorf("secret keys %s:%d: want \"KEYID HEXKEY\"", path, n)
		}
		k, err := hex.DecodeString(f[1])
		if err != nil || len(k) != 32 {
			return nil, fmt.Errorf("secret keys %s:%d: the key must be 64 hex digits (32 bytes)", path, n)
		}
		lines = append(lines, keyLine{id: f[0], key: k})
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("secret keys %s: no key", path)
	}
	ks, err := keysFrom(lines)
	if err != nil {
		return nil, fmt.Errorf("secret keys %s: %w", path, err)
	}
	ks.path = path
	return ks, nil
}

// seal encrypts plain with the active key; name is bound to the result
// (additional data), so that a sealed value copied to another secret does
// not open. Layout: "skv1" | len(id) | id | nonce | ciphertext+tag.
func (ks *SecretKeys) seal(name string, plain []byte) []byte {
	aead := ks.aeads[ks.active]
	out := append([]byte(sealMagic), byte(len(ks.active)))
	out = append(out, ks.active...)
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	out = append(out, nonce...)
	return aead.Seal(out, nonce, plain, []byte("secrets/"+name))
}

// open decrypts what seal made; it also says the key id used.
func (ks *SecretKeys) open(name string, sealed []byte) (plain []byte, keyID string, err error) {
	if len(sealed) < len(sealMagic)+1 || string(sealed[:len(sealMagic)]) != sealMagic {
		return nil, "", errSealed
	}
	rest := sealed[len(sealMagic):]
	n := int(rest[0])
	if len(rest) < 1+n {
		return nil, "", errSealed
	}
	keyID = string(rest[1 : 1+n])
	aead, ok := ks.aeads[keyID]
	if !ok {
		return nil, keyID, fmt.Errorf("%w: key %q is not in the key file", errSealed, keyID)
	}
	rest = rest[1+n:]
	if len(rest) < aead.NonceSize() {
		return nil, keyID, errSealed
	}
	plain, err = aead.Open(nil, rest[:aead.NonceSize()], rest[aead.NonceSize():], []byte("secrets/"+name))
	if err != nil {
		return nil, keyID, fmt.Errorf("%w: %v", errSealed, err)
	}
	return plain, keyID, nil
}

// writeNew creates path (0600, failing if it exists) with b, synced.
func writeNew(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
