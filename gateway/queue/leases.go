package queue

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Leases: with an external JetStream, several replicas consume the lanes of a destination,
// and each partition must be consumed by exactly one of them at a time, or two could send
// the jobs of one key at once. A replica consumes a partition while it holds the
// partition's lease, a key of leasesBucket whose values expire leaseTTL after their last
// write:
//
//	l.<destination>.<partition>  the lease: created to acquire it (fails while another
//	                             replica holds it), updated at its revision to renew it,
//	                             deleted when the replica lets it go
//	m.<destination>.<owner>      written by each replica consuming the destination's
//	                             lanes, so that each knows how many share them
//
// Each replica aims at its share: ceil(LanePartitions / replicas). It renews its leases
// every leaseRenew, lets go of partitions beyond its share, and acquires free ones below it.
// A replica that has not renewed a lease for leaseGiveUp stops consuming that partition at
// once (its rounds in flight are cancelled), leaseTTL - leaseGiveUp before another replica
// can acquire it: the jobs of one key never go out from two replicas at once. A replica
// that dies leaves its partitions to the others after at most leaseTTL; the one that takes
// a partition over recreates its consumer, so the jobs the dead one had in hand come first.
const (
	leasesBucket = "fanout_lane_leases"
	leaseTTL     = 12 * time.Second
	leaseRenew   = leaseTTL / 4
	leaseGiveUp  = leaseTTL / 2
	// leaseOpTimeout bounds one lease operation: a renewal that takes longer is as good as
	// failed.
	leaseOpTimeout = 2 * time.Second
)

func leaseKey(destination string, p int) string { return "l." + destination + "." + strconv.Itoa(p) }

func memberKey(destination, owner string) string { return "m." + destination + "." + owner }

// leaseLoop runs a lease round every leaseRenew and stops the partitions whose lease was
// not renewed in time, until Stop.
func (s *laneSet) leaseLoop() {
	renew := time.NewTicker(leaseRenew)
	defer renew.Stop()
	check := time.NewTicker(time.Second)
	defer check.Stop()
	for {
		select {
		case <-s.stopping:
			return
		case <-renew.C:
			s.manage()
		case <-check.C:
			s.giveUpStale()
		}
	}
}

// giveUpStale stops consuming the partitions whose lease has not been renewed for
// leaseGiveUp: another replica may have it soon.
func (s *laneSet) giveUpStale() {
	var stale []*partition
	s.mu.Lock()
	for p, pt := range s.parts {
		if time.Since(pt.renewed) > leaseGiveUp {
			stale = append(stale, pt)
			delete(s.parts, p)
		}
	}
	s.mu.Unlock()
	for _, pt := range stale {
		s.q.log.Warn("lane partition: its lease could not be renewed in time; no longer consuming it",
			"destination", s.destination, "partition", pt.p)
		pt.stop()
	}
}

// manage is one lease round: announce this replica, renew the leases held, let go of
// partitions beyond the share, acquire free ones below it.
func (s *laneSet) manage() {
	if s.stopped() {
		return
	}
	kv, d, log := s.q.leases, s.destination, s.q.log.With("destination", s.destination)
	ctx, cancel := context.WithTimeout(s.ctx, leaseOpTimeout)
	_, err := kv.Put(ctx, memberKey(d, s.q.owner), []byte(s.q.ownerName))
	cancel()
	if err != nil {
		log.Debug("lane leases: cannot announce this replica", "error", err)
		return // the store is unreachable: the renewals would fail too
	}
	members := s.members()

	s.mu.Lock()
	held := make([]*partition, 0, len(s.parts))
	for _, pt := range s.parts {
		held = append(held, pt)
	}
	s.mu.Unlock()
	for _, pt := range held {
		sent := time.Now()
		ctx, cancel := context.WithTimeout(s.ctx, leaseOpTimeout)
		rev, err := kv.Update(ctx, leaseKey(d, pt.p), []byte(s.q.owner), pt.leaseRev)
		cancel()
		if err != nil {
			if s.stopped() {
				return
			}
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				s.drop(pt, "its lease was taken by another replica", err)
			} else {
				log.Debug("lane leases: cannot renew", "partition", pt.p, "error", err)
			}
			continue
		}
		s.mu.Lock()
		pt.leaseRev, pt.renewed = rev, sent
		s.mu.Unlock()
	}

	share := (LanePartitions + members - 1) / max(members, 1)
	s.mu.Lock()
	n := len(s.parts)
	var extra []*partition
	for p := LanePartitions - 1; p >= 0 && n > share; p-- {
		if pt := s.parts[p]; pt != nil {
			extra = append(extra, pt)
			delete(s.parts, p)
			n--
		}
	}
	s.mu.Unlock()
	for _, pt := range extra {
		log.Info("lane partition: letting it go to another replica", "partition", pt.p, "replicas", members)
		pt.stop()
		s.releaseLease(pt)
	}
	if n >= share {
		return
	}
	// Start looking at a place of this replica's own, so that replicas starting together
	// do not all race for partition 0.
	first := LaneOf(s.q.owner)
	for i := range LanePartitions {
		if n >= share || s.stopped() {
			return
		}
		p := (first + i) % LanePartitions
		s.mu.Lock()
		mine := s.parts[p] != nil
		s.mu.Unlock()
		if mine {
			continue
		}
		ctx, cancel := context.WithTimeout(s.ctx, leaseOpTimeout)
		sent := time.Now()
		rev, err := kv.Create(ctx, leaseKey(d, p), []byte(s.q.owner))
		cancel()
		if err != nil {
			continue // held by another replica, or unreachable
		}
		if err := s.start(p, rev); err != nil {
			log.Warn("lane partition: cannot start consuming it", "partition", p, "error", err)
			s.releaseLease(&partition{set: s, p: p, leaseRev: rev})
			continue
		}
		s.mu.Lock()
		if pt := s.parts[p]; pt != nil {
			pt.renewed = sent
		}
		s.mu.Unlock()
		log.Info("lane partition: consuming it", "partition", p, "replicas", members)
		n++
	}
}

// members counts the replicas that announced themselves for the destination's lanes
// within leaseTTL (this one included).
func (s *laneSet) members() int {
	ctx, cancel := context.WithTimeout(s.ctx, leaseOpTimeout)
	defer cancel()
	keys, err := s.q.leases.ListKeysFiltered(ctx, memberKey(s.destination, "*"))
	if err != nil {
		return 1
	}
	n := 0
	for range keys.Keys() {
		n++
	}
	return max(n, 1)
}

// drop stops consuming pt, whose lease is lost.
func (s *laneSet) drop(pt *partition, why string, err error) {
	s.mu.Lock()
	if s.parts[pt.p] == pt {
		delete(s.parts, pt.p)
	}
	s.mu.Unlock()
	s.q.log.Warn("lane partition: no longer consuming it: "+why, "destination", s.destination, "partition", pt.p, "error", err)
	pt.stop()
}

// releaseLease deletes pt's lease, if this replica still holds it, so that another replica
// can take the partition at once. Without leases it does nothing.
func (s *laneSet) releaseLease(pt *partition) {
	if s.q.leases == nil || pt.leaseRev == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), leaseOpTimeout)
	defer cancel()
	if err := s.q.leases.Delete(ctx, leaseKey(s.destination, pt.p), jetstream.LastRevision(pt.leaseRev)); err != nil {
		s.q.log.Debug("lane leases: cannot release", "destination", s.destination, "partition", pt.p, "error", err)
	}
}
