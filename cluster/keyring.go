package cluster

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"github.com/hashicorp/memberlist"
)

// NewKey returns a fresh random 32-byte gossip key.
func NewKey() []byte {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // never fails on Linux
	}
	return k
}

// loadKeyring returns the keyring for a member: the keyring file's keys when
// the file exists (the file wins, it may hold rotated keys), else a ring of
// key alone, which is then written to the file when one is configured.
func loadKeyring(file string, key []byte, logger *slog.Logger) (*memberlist.Keyring, error) {
	if file != "" {
		keys, err := readKeyringFile(file)
		if err == nil {
			if key != nil && !slices.ContainsFunc(keys, func(k []byte) bool { return bytes.Equal(k, key) }) {
				logger.Warn("the keyring file does not hold the configured gossip key; the file wins", "keyring", file)
			}
			return memberlist.NewKeyring(keys, keys[0])
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("gossip key is %d bytes, want %d", len(key), KeySize)
	}
	ring, err := memberlist.NewKeyring(nil, key)
	if err != nil {
		return nil, fmt.Errorf("gossip keyring: %w", err)
	}
	if file != "" {
		if err := writeKeyringFile(file, [][]byte{key}); err != nil {
			return nil, err
		}
	}
	return ring, nil
}

// readKeyringFile reads serf's keyring file: a JSON list of base64 keys,
// the primary first.
func readKeyringFile(file string) ([][]byte, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read keyring: %w", err)
	}
	var encoded []string
	if err := json.Unmarshal(data, &encoded); err != nil {
		return nil, fmt.Errorf("keyring file %s: %w", file, err)
	}
	if len(encoded) == 0 {
		return nil, fmt.Errorf("keyring file %s holds no key", file)
	}
	keys := make([][]byte, 0, len(encoded))
	for i, e := range encoded {
		k, err := base64.StdEncoding.DecodeString(e)
		if err != nil {
			return nil, fmt.Errorf("keyring file %s: key %d: %w", file, i, err)
		}
		if len(k) != 16 && len(k) != 24 && len(k) != 32 {
			return nil, fmt.Errorf("keyring file %s: key %d is %d bytes", file, i, len(k))
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// writeKeyringFile writes the keys in serf's format, mode 0600, atomically.
func writeKeyringFile(file string, keys [][]byte) error {
	encoded := make([]string, len(keys))
	for i, k := range keys {
		encoded[i] = base64.StdEncoding.EncodeToString(k)
	}
	data, err := json.MarshalIndent(encoded, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("keyring dir: %w", err)
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("write keyring: %w", err)
	}
	if err := os.Rename(tmp, file); err != nil {
		return fmt.Errorf("write keyring: %w", err)
	}
	return nil
}
