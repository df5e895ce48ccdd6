package eventlog

// SetSearchBatches makes searches read a few positions and index entries at a time, so
// that a test covers their windows with a few callbacks. It returns what restores them.
func SetSearchBatches(window, index int) (restore func()) {
	w, i := firstWindow, smallIndex
	firstWindow, smallIndex = window, index
	return func() { firstWindow, smallIndex = w, i }
}
