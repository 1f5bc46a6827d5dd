package apiserver

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/client"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

const secretMarker = "hunter2-NEVER-IN-CLEAR-7f3a"

const filesManifest = `{
 "configs":{"site":{"files":{"app.conf":"color = blue"}}},
 "secrets":{"db":{"files":{"password":"` + secretMarker + `"}}},
 "apps":{"web":{"containers":{"c":{"image":"busybox","mounts":{"conf":"/etc/app","creds":"/run/creds"},
   "env_from":{"DB_PASS":"secret:db/password"}}},
  "volumes":{"conf":{"type":"config","name":"site"},"creds":{"type":"secret","name":"db"}}}}}`

// TestConfigsAndSecretsAPI: an apply stores a config and a sealed secret
// and gives the app their versions; the secret never shows in clear (API
// answers, the bbolt file); a changed config or secret changes the app's
// template; references to what does not exist are 400 on the field; what
// an app uses cannot be deleted.
func TestConfigsAndSecretsAPI(t *testing.T) {
	dir := t.TempDir()
	dbFile := filepath.Join(dir, "state.db")
	st, err := store.Open(dbFile, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := LoadSecretKeys(filepath.Join(dir, SecretKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, SecretKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v, want mode 0600", fi.Mode(), err)
	}
	s := New(st, Options{SecretKeys: keys})

	if rec := serve(s, "POST", "/v1/apply", filesManifest); rec.Code != http.StatusOK {
		t.Fatalf("apply: %d %s", rec.Code, rec.Body)
	}
	var app api.App
	if err := st.Get(api.KindApp, "web", &app); err != nil {
		t.Fatal(err)
	}
	if len(app.Spec.ContentHashes) != 2 || app.Spec.ContentHashes["config/site"] == "" || app.Spec.ContentHashes["secret/db"] == "" {
		t.Fatalf("content hashes %v", app.Spec.ContentHashes)
	}
	hash0 := api.TemplateHash(&app.Spec)

	for _, path := range []string{"/v1/secrets", "/v1/secrets/db"} {
		rec := serve(s, "GET", path, "")
		if rec.Code != http.StatusOK || strings.Contains(rec.Body.String(), secretMarker) || strings.Contains(rec.Body.String(), "sealed") ||
			!strings.Contains(rec.Body.String(), `"password":`+strconv.Itoa(len(secretMarker))) {
			t.Errorf("GET %s: %d %s", path, rec.Code, rec.Body)
		}
	}
	if rec := serve(s, "GET", "/v1/secrets?watch=1", ""); rec.Code != http.StatusBadRequest {
		t.Errorf("watch secrets: %d, want 400", rec.Code)
	}
	// The same apply again changes nothing: no rollout.
	if rec := serve(s, "POST", "/v1/apply", filesManifest); rec.Code != http.StatusOK || strings.Contains(rec.Body.String(), "configured") {
		t.Fatalf("apply again: %d %s", rec.Code, rec.Body)
	}

	// A changed config, then a changed secret: a new template each time.
	rec := serve(s, "PUT", "/v1/configs/site", `{"spec":{"files":{"app.conf":"color = red"}}}`)
	if rec.Code != http.StatusOK {
		t.Fatalf("put config: %d %s", rec.Code, rec.Body)
	}
	st.Get(api.KindApp, "web", &app)
	hash1 := api.TemplateHash(&app.Spec)
	rec = serve(s, "PUT", "/v1/secrets/db", `{"spec":{"files":{"password":"other"}}}`)
	if rec.Code != http.StatusOK || strings.Contains(rec.Body.String(), "other") {
		t.Fatalf("put secret: %d %s", rec.Code, rec.Body)
	}
	st.Get(api.KindApp, "web", &app)
	hash2 := api.TemplateHash(&app.Spec)
	if hash0 == hash1 || hash1 == hash2 {
		t.Errorf("template hashes %s %s %s: want a new one at each change", hash0, hash1, hash2)
	}

	tests := []struct {
		name, method, path, body string
		code                     int
		want                     string
	}{
		{"missing config", "PUT", "/v1/apps/x", `{"spec":{"containers":{"c":{"image":"busybox","mounts":{"v":"/v"}}},"volumes":{"v":{"type":"config","name":"nope"}}}}`,
			400, `"field":"app.x.volume.v.name"`},
		{"missing file", "PUT", "/v1/apps/x", `{"spec":{"containers":{"c":{"image":"busybox","env_from":{"A":"config:site/nope"}}}}}`,
			400, `config \"site\" has no file \"nope\"`},
		{"too big", "PUT", "/v1/secrets/big", `{"spec":{"files":{"a":"` + strings.Repeat("x", configs.MaxFilesSize+1) + `"}}}`,
			400, "more than the limit"},
		{"bad file name", "PUT", "/v1/configs/c", `{"spec":{"files":{"../a":"x"}}}`, 400, `"field":"config.c.files.\"../a\""`},
		{"delete in use", "DELETE", "/v1/secrets/db", "", 409, "used by app web"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := serve(s, tt.method, tt.path, tt.body)
			if rec.Code != tt.code || !strings.Contains(rec.Body.String(), tt.want) {
				t.Fatalf("%d %s, want %d with %s", rec.Code, rec.Body, tt.code, tt.want)
			}
		})
	}

	// The store file holds the secret sealed only.
	st.Close()
	b, err := os.ReadFile(dbFile)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte(secretMarker)) || bytes.Contains(b, []byte(`"password":"other"`)) {
		t.Error("the bbolt file holds the secret in clear")
	}
	if !bytes.Contains(b, []byte("color = red")) {
		t.Error("the bbolt file lacks the config (the grep would prove nothing)")
	}
}

// TestNodeSecretAccess: a node fetches a secret in clear only for a pod
// bound to it that uses the secret; another node, an admin token and the
// node for a secret its pods do not use are refused.
func TestNodeSecretAccess(t *testing.T) {
	e := newTLSEnv(t, time.Hour)
	if rec := serve(e.s, "POST", "/v1/apply", filesManifest); rec.Code != http.StatusOK {
		t.Fatalf("apply: %d %s", rec.Code, rec.Body)
	}
	if rec := serve(e.s, "PUT", "/v1/secrets/other", `{"spec":{"files":{"k":"v"}}}`); rec.Code != http.StatusCreated {
		t.Fatalf("put secret: %d %s", rec.Code, rec.Body)
	}
	var app api.App
	e.st.Get(api.KindApp, "web", &app)
	_, err := e.st.Update(func(tx *store.Tx) error {
		return tx.Put(api.KindPod, &api.Pod{Meta: api.Meta{Name: "web-1"}, Spec: api.PodSpec{App: "web", Node: "node-a",
			Containers: app.Spec.Containers, Volumes: app.Spec.Volumes}})
	})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := e.node("node-a")
	b, _ := e.node("node-b")
	ctx := context.Background()

	sec, err := a.NodeSecret(ctx, "node-a", "db")
	if err != nil || sec.Spec.Files["password"] != secretMarker {
		t.Fatalf("node-a fetch: %v %+v", err, sec)
	}
	for _, tt := range []struct {
		name       string
		c          *client.Client
		node, what string
	}{
		{"another node", b, "node-b", "db"},
		{"another node's path", b, "node-a", "db"},
		{"a secret its pods do not use", a, "node-a", "other"},
		{"an admin token", e.client(e.token(api.RoleAdmin, "1h")), "node-a", "db"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sec, err := tt.c.NodeSecret(ctx, tt.node, tt.what)
			if !client.IsForbidden(err) {
				t.Fatalf("got %v %+v, want 403", err, sec)
			}
		})
	}
}

// TestSecretKeyRotation: a new key put first in the key file seals from
// then on; the old key still opens what it sealed, and the server re-seals
// every secret with the new key when it starts.
func TestSecretKeyRotation(t *testing.T) {
	dir := t.TempDir()
	kf := filepath.Join(dir, SecretKeyFile)
	k1, err := LoadSecretKeys(kf)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "state.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := New(st, Options{SecretKeys: k1})
	if rec := serve(s, "PUT", "/v1/secrets/db", `{"spec":{"files":{"p":"v1"}}}`); rec.Code != http.StatusCreated {
		t.Fatalf("put: %d %s", rec.Code, rec.Body)
	}
	old, _ := os.ReadFile(kf)
	if err := os.WriteFile(kf, append([]byte("k2 "+strings.Repeat("ab", 32)+"\n"), old...), 0o600); err != nil {
		t.Fatal(err)
	}
	k2, err := LoadSecretKeys(kf)
	if err != nil || k2.active != "k2" {
		t.Fatalf("reload: %v, active %q", err, k2.active)
	}
	var before api.Secret
	st.Get(api.KindSecret, "db", &before)
	New(st, Options{SecretKeys: k2}) // re-seals at start
	var after api.Secret
	st.Get(api.KindSecret, "db", &after)
	plain, kid, err := k2.open("db", after.Sealed)
	if err != nil || kid != "k2" || string(plain) != `{"p":"v1"}` {
		t.Fatalf("after rotation: %q %q %v", plain, kid, err)
	}
	if after.Status.Version != before.Status.Version {
		t.Error("a re-seal changed the version (it would roll every app)")
	}
	if _, _, err := k1.open("db", after.Sealed); err == nil {
		t.Error("the old keyring opens what the new key sealed")
	}
	if err := os.WriteFile(kf, old, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(kf, 0o644)
	if _, err := LoadSecretKeys(kf); err == nil || !strings.Contains(err.Error(), "want 0600") {
		t.Errorf("a world-readable key file: %v", err)
	}
}
