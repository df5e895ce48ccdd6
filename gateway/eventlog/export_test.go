package eventlog

// SetSearchBatches makes searches read a few blocks and index entries at a time, and the
// writer make blocks of two records, so that a test covers their windows with a few
// callbacks. It returns what restores them.
func SetSearchBatches(window, index int) (restore func()) {
	w, i, r := firstWindow, firstIndexWindow, maxBlockRecords
	firstWindow, firstIndexWindow, maxBlockRecords = window, index, 2
	return func() { firstWindow, firstIndexWindow, maxBlockRecords = w, i, r }
}
