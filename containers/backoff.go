package containers

import "time"

// Restart backoff: 1 s doubling to a 5-minute cap, reset after a run of 10
// minutes.
const (
	backoffBase  = time.Second
	backoffCap   = 5 * time.Minute
	backoffReset = 10 * time.Minute
)

// shouldRestart applies a restart policy to an exit code.
func shouldRestart(p RestartPolicy, exitCode int) bool {
	switch p {
	case RestartNever:
		return false
	case RestartOnFailure:
		return exitCode != 0
	default:
		return true
	}
}

// nextBackoff returns the delay before the next start and the new count of
// restarts in a row, given that count and how long the last run lasted.
func nextBackoff(inRow int, ran time.Duration) (time.Duration, int) {
	if ran >= backoffReset {
		inRow = 0
	}
	d := backoffBase
	for i := 0; i < inRow && d < backoffCap; i++ {
		d *= 2
	}
	return min(d, backoffCap), inRow + 1
}
