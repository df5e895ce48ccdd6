package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The replicas registry: each Fanout process sharing the queue keeps an entry in a small
// key-value bucket, with the destinations its config names, and renews it every
// ReplicaTTL/3; the bucket forgets an entry ReplicaTTL after its last renewal (a replica
// that died). A destination's backlog is dead-lettered as removed only when no entry names
// it, so that a replica running an older or a canary config cannot take away the backlog of
// a destination that the others still serve.
const (
	replicasBucket = "fanout_replicas"
	// ReplicaTTL is how long a replica's entry outlives its last renewal.
	ReplicaTTL = 30 * time.Second
)

// Replica is one process's entry in the registry.
type Replica struct {
	ID           string    `json:"id"`
	ConfigHash   string    `json:"config_hash"`
	Destinations []string  `json:"destinations"`
	At           time.Time `json:"at"` // when it was written
}

// createRegistry creates or updates the registry bucket. It lives in memory: entries are
// renewed every few seconds, and a server restart forgets only what the replicas write
// again at their next renewal.
func (q *Queue) createRegistry(ctx context.Context, replicas int) error {
	ctx, cancel := context.WithTimeout(ctx, setupRequestTimeout)
	defer cancel()
	kv, err := q.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      replicasBucket,
		Description: "Fanout replicas and the destinations their config names",
		TTL:         ReplicaTTL,
		History:     1,
		Storage:     jetstream.MemoryStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return fmt.Errorf("queue: create or update the replicas registry: %w", err)
	}
	q.registry = kv
	return nil
}

// Announce writes (or renews) r's entry in the registry.
func (q *Queue) Announce(ctx context.Context, r Replica) error {
	r.At = time.Now().UTC()
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("queue: announce replica %s: %w", r.ID, err)
	}
	if _, err := q.registry.Put(ctx, r.ID, b); err != nil {
		return fmt.Errorf("queue: announce replica %s: %w", r.ID, err)
	}
	return nil
}

// Withdraw removes id's entry from the registry (a replica stopping).
func (q *Queue) Withdraw(ctx context.Context, id string) error {
	if err := q.registry.Purge(ctx, id); err != nil {
		return fmt.Errorf("queue: withdraw replica %s: %w", id, err)
	}
	return nil
}

// Replicas returns the live entries of the registry, sorted by id.
func (q *Queue) Replicas(ctx context.Context) ([]Replica, error) {
	keys, err := q.registry.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("queue: list replicas: %w", err)
	}
	defer keys.Stop()
	var out []Replica
	for key := range keys.Keys() {
		e, err := q.registry.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // expired meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("queue: read replica %s: %w", key, err)
		}
		var r Replica
		if err := json.Unmarshal(e.Value(), &r); err != nil {
			q.log.Warn("replicas registry: unreadable entry, ignored", "key", key, "error", err)
			continue
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Replica) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}
