//go:build race

package agent_test

// raceEnabled builds skiff with -race under go test -race.
const raceEnabled = true
