package containers

import "fmt"

// checkNames refuses, with ErrInvalid, a pod or container name that no
// pod or container can have (validName: a DNS label, so no '/' and no
// ".."). Every entry point that takes names checks them before it touches
// a path: the runtime makes file names of them (the log of container c of
// pod p is under Root/pods/p/logs/c.log). name may be omitted for
// pod-wide operations.
func checkNames(op, pod string, name ...string) error {
	if err := validName("pod", pod); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	for _, n := range name {
		if err := validName("container", n); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	return nil
}
