package configs

import (
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// The TOML library turns a file into a tree of map[string]any; decoder then
// fills the spec structs from that tree itself, instead of the library's
// Decode, so that it can report every unknown key and every wrong type of a
// file at once, each with its field path.

var (
	durationType = reflect.TypeFor[Duration]()
	bytesType    = reflect.TypeFor[Bytes]()
	portRefType  = reflect.TypeFor[PortRef]()
)

// zeroCheck is a field that SetDefaults fills when it is zero: written
// explicitly as zero in a file, it would silently become the default, so
// the decoder reports it.
type zeroCheck struct {
	typ reflect.Type
	key string
}

// explicitZero maps such fields to the message for an explicit zero.
var explicitZero = map[zeroCheck]string{
	{reflect.TypeFor[AppSpec](), "termination_grace"}:    "must be > 0",
	{reflect.TypeFor[AppSpec](), "mode"}:                 enumMsg("", "mode", ModeReplicas, ModePerNode),
	{reflect.TypeFor[AppSpec](), "restart"}:              enumMsg("", "restart policy", RestartAlways, RestartOnFailure, RestartNever),
	{reflect.TypeFor[ContainerSpec](), "seccomp"}:        enumMsg("", "seccomp profile", SeccompDefault, SeccompUnconfined),
	{reflect.TypeFor[Probe](), "period"}:                 "must be > 0",
	{reflect.TypeFor[Probe](), "timeout"}:                "must be > 0",
	{reflect.TypeFor[Probe](), "failure_threshold"}:      "must be >= 1",
	{reflect.TypeFor[Probe](), "success_threshold"}:      "must be >= 1",
	{reflect.TypeFor[UpdateSpec](), "progress_deadline"}: "must be > 0",
	{reflect.TypeFor[VolumeSpec](), "type"}:              enumMsg("", "volume type", VolumeEmpty, VolumeMemory, VolumeHost, VolumeConfig, VolumeSecret),
	{reflect.TypeFor[ServiceSpec](), "protocol"}:         enumMsg("", "protocol", ProtocolTCP, ProtocolUDP),
	{reflect.TypeFor[ServiceSpec](), "type"}:             enumMsg("", "service type", ServiceCluster, ServiceNodePort, ServiceLoadBalancer),
	{reflect.TypeFor[ServiceSpec](), "affinity"}:         enumMsg("", "affinity", AffinityNone, AffinityClientIP),
	{reflect.TypeFor[ServiceSpec](), "announce"}:         enumMsg("", "announce policy", AnnounceAnyNode, AnnounceReadyNode),
	{reflect.TypeFor[NodeConfig](), "node_name"}:         "must not be empty",
	{reflect.TypeFor[NodeConfig](), "data_dir"}:          "must not be empty",
	{reflect.TypeFor[NodeConfig](), "run_dir"}:           "must not be empty",
	{reflect.TypeFor[NodeConfig](), "cluster_cidr"}:      "must not be empty",
	{reflect.TypeFor[NodeConfig](), "service_cidr"}:      "must not be empty",
	{reflect.TypeFor[NodeConfig](), "bridge"}:            "must not be empty",
	{reflect.TypeFor[NodeConfig](), "cgroup_parent"}:     "must not be empty",
	{reflect.TypeFor[NodeConfig](), "max_pods"}:          "must be >= 1",
	{reflect.TypeFor[NodeConfig](), "node_grace"}:        "must be > 0",
	{reflect.TypeFor[NodeConfig](), "api_addr"}:          "must not be empty",
	{reflect.TypeFor[NodeConfig](), "gossip_addr"}:       "must not be empty",
	{reflect.TypeFor[Gossip](), "profile"}:               enumMsg("", "gossip profile", GossipEdge, GossipLAN, GossipWAN),
}

// decoder fills Go values from a decoded TOML tree.
type decoder struct {
	errs *errs
}

// decode sets rv (settable) from the TOML value v found at p.
func (d *decoder) decode(p path, v any, rv reflect.Value) {
	switch rv.Type() {
	case durationType:
		s, ok := v.(string)
		if !ok {
			d.typeErr(p, `a duration string like "2s"`, v)
			return
		}
		var x Duration
		if err := x.UnmarshalText([]byte(s)); err != nil {
			d.errs.add(p, "%v", err)
			return
		}
		rv.Set(reflect.ValueOf(x))
		return
	case bytesType:
		var x Bytes
		switch v := v.(type) {
		case string:
			if err := x.UnmarshalText([]byte(v)); err != nil {
				d.errs.add(p, "%v", err)
				return
			}
		case int64:
			if v < 0 {
				d.errs.add(p, "must be >= 0")
				return
			}
			x = Bytes(v)
		default:
			d.typeErr(p, `a size like "64Mi"`, v)
			return
		}
		rv.Set(reflect.ValueOf(x))
		return
	case portRefType:
		var x PortRef
		switch v := v.(type) {
		case int64:
			if v < 1 || v > 65535 {
				d.errs.add(p, "%s", portRangeMsg(v))
				return
			}
			x.Number = int(v)
		case string:
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				if n < 1 || n > 65535 {
					d.errs.add(p, "%s", portRangeMsg(n))
					return
				}
				x.Number = int(n)
			} else {
				x.Name = v // checked by validation
			}
		default:
			d.typeErr(p, "a port number or name", v)
			return
		}
		rv.Set(reflect.ValueOf(x))
		return
	}

	switch rv.Kind() {
	case reflect.Pointer:
		nv := reflect.New(rv.Type().Elem())
		d.decode(p, v, nv.Elem())
		rv.Set(nv)
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			d.typeErr(p, "a table", v)
			return
		}
		d.decodeStruct(p, m, rv)
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			d.typeErr(p, "a table", v)
			return
		}
		out := reflect.MakeMapWithSize(rv.Type(), len(m))
		for _, k := range sortedKeys(m) {
			ev := reflect.New(rv.Type().Elem()).Elem()
			d.decode(p.with(k), m[k], ev)
			out.SetMapIndex(reflect.ValueOf(k), ev)
		}
		rv.Set(out)
	case reflect.Slice:
		a, ok := v.([]any)
		if !ok {
			d.typeErr(p, "an array", v)
			return
		}
		out := reflect.MakeSlice(rv.Type(), len(a), len(a))
		for i, e := range a {
			d.decode(p.index(i), e, out.Index(i))
		}
		rv.Set(out)
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			d.typeErr(p, "a string", v)
			return
		}
		rv.SetString(s)
	case reflect.Int:
		n, ok := v.(int64)
		if !ok {
			d.typeErr(p, "an integer", v)
			return
		}
		if rv.OverflowInt(n) {
			d.errs.add(p, "%d is out of range", n)
			return
		}
		rv.SetInt(n)
	case reflect.Float64:
		switch n := v.(type) {
		case float64:
			rv.SetFloat(n)
		case int64:
			rv.SetFloat(float64(n))
		default:
			d.typeErr(p, "a number", v)
		}
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			d.typeErr(p, "a boolean", v)
			return
		}
		rv.SetBool(b)
	default:
		// Only reachable if a spec type gains a field of a kind not
		// handled above.
		d.errs.add(p, "cannot decode into %s", rv.Type())
	}
}

// decodeStruct fills the fields of rv from the keys of m by their toml tags.
func (d *decoder) decodeStruct(p path, m map[string]any, rv reflect.Value) {
	t := rv.Type()
	fields := tomlFields(t)
	for _, k := range sortedKeys(m) {
		i, ok := fields[k]
		if !ok {
			msg := "unknown key"
			if s := suggest(k, sortedKeys(fields)); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			d.errs.addKey(p.with(k), "%s", msg)
			continue
		}
		f := rv.Field(i)
		before := len(d.errs.list)
		d.decode(p.with(k), m[k], f)
		if msg, ok := explicitZero[zeroCheck{t, k}]; ok && len(d.errs.list) == before && f.IsZero() {
			d.errs.add(p.with(k), "%s", msg)
		}
	}
}

// tomlFields maps the toml keys of struct type t to field indexes.
func tomlFields(t reflect.Type) map[string]int {
	fields := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		fields[name] = i
	}
	return fields
}

// typeErr reports that the value at p is v, not what was expected.
func (d *decoder) typeErr(p path, want string, v any) {
	d.errs.add(p, "expected %s, got %s", want, describe(v))
}

// describe names the TOML type of v, with the value for short scalars.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		if len(v) > 40 {
			v = v[:37] + "..."
		}
		return fmt.Sprintf("a string (%q)", v)
	case int64:
		return fmt.Sprintf("an integer (%d)", v)
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Sprintf("a float (%v)", v)
		}
		return fmt.Sprintf("a float (%s)", strconv.FormatFloat(v, 'g', -1, 64))
	case bool:
		return fmt.Sprintf("a boolean (%t)", v)
	case map[string]any:
		return "a table"
	case []map[string]any:
		return "an array of tables"
	case []any:
		return "an array"
	default:
		return "a datetime"
	}
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// portRangeMsg is the message for a port number out of range.
func portRangeMsg(n int64) string { return fmt.Sprintf("port %d is out of range 1-65535", n) }

// enumMsg is the message for a value not among allowed. An empty val gives
// the message for an explicit "".
func enumMsg(val, what string, allowed ...string) string {
	list := strings.Join(allowed[:len(allowed)-1], ", ") + " or " + allowed[len(allowed)-1]
	article := "a"
	if strings.ContainsRune("aeiou", rune(what[0])) {
		article = "an"
	}
	return fmt.Sprintf("%q is not %s %s (use %s)", val, article, what, list)
}
