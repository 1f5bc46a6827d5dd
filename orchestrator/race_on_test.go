//go:build race

package orchestrator_test

// raceEnabled makes TestMain build the server with -race too.
const raceEnabled = true
