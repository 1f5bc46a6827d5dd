package configs

import (
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// TestDefaultNodeConfigFile checks the config file packages install: as
// written (all commented) it gives the defaults; uncommented whole it
// decodes, sets every key of NodeConfig, and every key shown with its
// default decodes back to that default.
func TestDefaultNodeConfigFile(t *testing.T) {
	file := DefaultNodeConfigFile()
	got, err := ParseNodeConfig("config.toml", file)
	if err != nil {
		t.Fatalf("the file as installed: %v", err)
	}
	if !reflect.DeepEqual(got, DefaultNodeConfig()) {
		t.Errorf("the file as installed gives %+v, not the defaults", got)
	}

	// Every key of NodeConfig, as "table.key", and every doc entry used.
	want := map[string]bool{}
	def := reflect.ValueOf(DefaultNodeConfig())
	defaults := map[string]reflect.Value{}
	for _, f := range reflect.VisibleFields(def.Type()) {
		k := tomlKey(f)
		if k == "" {
			continue
		}
		if f.Type.Kind() == reflect.Struct && !isText(f.Type) {
			want[k] = true // the table's own doc line
			for _, sf := range reflect.VisibleFields(f.Type) {
				if sk := tomlKey(sf); sk != "" {
					want[k+"."+sk] = true
					defaults[k+"."+sk] = def.FieldByIndex(f.Index).FieldByIndex(sf.Index)
				}
			}
			continue
		}
		want[k] = true
		defaults[k] = def.FieldByIndex(f.Index)
	}
	for k := range want {
		if _, ok := nodeKeyDocs[k]; !ok {
			t.Errorf("key %s has no entry in nodeKeyDocs", k)
		}
	}
	for k := range nodeKeyDocs {
		if !want[k] {
			t.Errorf("nodeKeyDocs has %s, which NodeConfig does not", k)
		}
	}

	// Uncomment every key and table header.
	assign := regexp.MustCompile(`^# (\[[a-z_]+\]|[a-z_]+ = .*)$`)
	var lines []string
	set := map[string]bool{}
	table := ""
	for _, l := range strings.Split(string(file), "\n") {
		m := assign.FindStringSubmatch(l)
		if m == nil {
			lines = append(lines, l)
			continue
		}
		lines = append(lines, m[1])
		if strings.HasPrefix(m[1], "[") {
			table = strings.Trim(m[1], "[]")
			set[table] = true
			continue
		}
		k, _, _ := strings.Cut(m[1], " ")
		if table != "" {
			k = table + "." + k
		}
		if set[k] {
			t.Errorf("key %s written twice", k)
		}
		set[k] = true
	}
	for k := range want {
		if !set[k] {
			t.Errorf("key %s is not in the file", k)
		}
	}
	open := []byte(strings.Join(lines, "\n"))
	all, err := ParseNodeConfig("config.toml", open)
	if err != nil {
		t.Fatalf("the file uncommented: %v\n%s", err, open)
	}
	av := reflect.ValueOf(all)
	for k, dv := range defaults {
		if nodeKeyDocs[k].example != "" {
			continue
		}
		top, sub, nested := strings.Cut(k, ".")
		var f reflect.Value
		for _, sf := range reflect.VisibleFields(av.Type()) {
			if tomlKey(sf) == top {
				f = av.FieldByIndex(sf.Index)
			}
		}
		if nested {
			for _, sf := range reflect.VisibleFields(f.Type()) {
				if tomlKey(sf) == sub {
					f = f.FieldByIndex(sf.Index)
				}
			}
		}
		if !reflect.DeepEqual(f.Interface(), dv.Interface()) {
			t.Errorf("%s uncommented is %v, default %v", k, f, dv)
		}
	}
}
