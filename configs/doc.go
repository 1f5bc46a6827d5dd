// Package configs is skiff's TOML: the deploy manifests (apps and services)
// and the node config (/etc/skiff/config.toml).
//
// It owns the spec types that manifests decode into (AppSpec, ServiceSpec,
// NodeConfig), their defaults (SetDefaults, DefaultNodeConfig) and their
// validation. ParseManifest, LoadManifests and LoadNodeConfig report every
// problem of a file at once as an ErrorList of FieldError, each naming
// file:line:column and the field path:
//
//	web.toml:7:10: app.web.container.http.memory: "64MB" is not a size (use 64Mi)
//	web.toml:12:10: app.web.contianer: unknown key (did you mean "container"?)
//
// Unknown keys, wrong types and bad values are all errors; nothing of a bad
// file is returned. The same checks run without positions through
// Manifest.Validate, ValidateApp and ValidateService, which the server uses
// on API bodies; they accept zero values of defaulted fields as "use the
// default".
//
// The spec types also travel as JSON (snake_case keys): Duration as "2s",
// Bytes as "64Mi" (a number of bytes is accepted too), PortRef as a number
// or a name.
//
// The package imports nothing of skiff's.
package configs
