package webhook

// ID is the webhook-id of one callback's deliveries to one destination: the same for every
// attempt, redelivery, replay and replica, and different for each destination, so that a
// receiver can de-duplicate on it.
func ID(eventID, destination string) string {
	return "msg_" + eventID + "_" + destination
}
