// Package ui is skiff's web console: server-rendered pages (html/template
// and a few lines of JavaScript, all embedded in the binary) that show the
// site at a glance and do the common actions, served by `skiff server` at
// /ui/ of the TLS API and, if ui_addr is set, on a loopback plain-HTTP port.
//
// It signs people in with the API's own tokens (a read token sees, an admin
// token acts, anything else gets nothing; the apiserver decides, see
// apiserver/console.go), keeps the token server-side in a bounded session
// table and re-checks it on every request, so that a revoked token ends its
// sessions at once. Pages read the store; actions go through the API's own
// routes as the signed-in identity. Pages stay live through one watch of
// the store, fanned out to the browsers as server-sent events.
package ui
