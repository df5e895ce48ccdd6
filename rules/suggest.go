package rules

import "strings"

// Suggest returns the candidate closest to name, for a "did you mean", when it is close
// enough to be a plausible typo. Distance is Damerau-Levenshtein (optimal string alignment:
// insertions, deletions, substitutions and swaps of adjacent characters each cost 1),
// compared case-insensitively because case slips are the commonest typo. A candidate is
// close enough when the distance is at most a quarter of name's length, and at least 1:
// To_Acount -> To_Account (1 edit in 9) and C2C.CallbackAfterSendMessage ->
// C2C.CallbackAfterSendMsg (4 in 28) qualify, while two different short words such as
// Type and Name (2 in 4) do not. On a tie the earlier candidate wins, so a caller that
// passes a sorted or documented order gets a stable answer.
func Suggest(name string, candidates []string) (string, bool) {
	if name == "" {
		return "", false
	}
	a := []rune(strings.ToLower(name))
	limit := max(1, len(a)/4)
	best, bestDist, found := "", limit+1, false
	for _, c := range candidates {
		b := []rune(strings.ToLower(c))
		if len(b) == 0 || abs(len(b)-len(a)) >= bestDist {
			continue // the length difference alone is too many edits
		}
		if d := distance(a, b); d < bestDist {
			best, bestDist, found = c, d, true
		}
	}
	return best, found
}

// distance is the optimal-string-alignment Damerau-Levenshtein distance between a and b,
// kept to three rows since Suggest runs it against every known name.
func distance(a, b []rune) int {
	prev2 := make([]int, len(b)+1) // row i-2
	prev := make([]int, len(b)+1)  // row i-1
	cur := make([]int, len(b)+1)   // row i
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
