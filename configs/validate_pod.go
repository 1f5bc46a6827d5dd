package configs

import "strings"

// ValidatePod checks the template of pod name, which the API receives as a
// whole pod (from controllers that run out of process): its containers and
// volumes, restart policy, node selector and termination grace, by the
// same rules as an app's (ValidateApp). tmpl carries those fields of the
// pod; replicas, mode, update and autoscale are an app's and must be unset.
// The error is an ErrorList without positions, with field paths
// "pod.NAME....".
func ValidatePod(name string, tmpl *AppSpec) error {
	var e errs
	validateTemplate(&e, path{"pod", name}, name, tmpl)
	return e.list.err()
}

// ValidateLabels checks a map of node labels or a node selector at field,
// a dotted path ("node.edge-01.labels"), by the rules of the node config's
// labels.
func ValidateLabels(field string, labels map[string]string) error {
	var e errs
	checkLabels(&e, path(strings.Split(field, ".")), labels)
	return e.list.err()
}
