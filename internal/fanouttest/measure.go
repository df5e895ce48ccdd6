package fanouttest

import (
	"slices"
	"time"
)

// MostWithin is the largest number of the times at within one window [at[i], at[i]+window):
// how bunched a series of deliveries or grants was. A benchmark reports it; a test asserts
// it only of times it chose itself (a schedule read on a virtual clock), never of times it
// measured.
func MostWithin(at []time.Time, window time.Duration) int {
	at = slices.SortedFunc(slices.Values(at), time.Time.Compare)
	most := 0
	for i := range at {
		n := 0
		for j := i; j < len(at) && at[j].Sub(at[i]) < window; j++ {
			n++
		}
		most = max(most, n)
	}
	return most
}
