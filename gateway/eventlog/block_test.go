package eventlog

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestBlockRoundTrip writes records into a block and reads them back, with the index
// entry's filter saying yes to every key the block holds and no to nearly every other.
func TestBlockRoundTrip(t *testing.T) {
	b := newBlockBuilder(maxBlockRecords)
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	long := strings.Repeat("x", 300) // an id longer than a byte counts
	var ids []string
	for i := range 100 {
		id := fmt.Sprintf("%032x", i)
		if i == 7 {
			id = long
		}
		ids = append(ids, id)
		e := Entry{At: at, Kind: KindReceived, Command: "C2C.CallbackAfterSendMsg",
			fields: []Field{{Name: "MsgKey", Value: fmt.Sprint("key-", i)}, {Name: "To_Account", Value: "bob"}}}
		b.add(id, &e, []byte(fmt.Sprintf(`{"n":%d}`, i)))
	}
	entry, err := decodeEntry(Stored{Seq: 3, Block: 9, Time: at, Data: b.entry()})
	if err != nil || entry.records != 100 || entry.pos != 3 || entry.block != 9 {
		t.Fatalf("entry: %+v, %v", entry, err)
	}
	n := 0
	block := b.pack()
	if err := eachRecord(block, func(i int, id, data []byte) bool {
		r := decode(raw{pos: uint64(i), id: string(id), data: data}, true)
		if string(id) != ids[i] || r.entry.Kind != KindReceived || string(r.body) != fmt.Sprintf(`{"n":%d}`, i) ||
			r.entry.Fields["MsgKey"] != fmt.Sprint("key-", i) {
			t.Errorf("record %d: %s %+v %s", i, id, r.entry, r.body)
		}
		n++
		return true
	}); err != nil || n != 100 {
		t.Fatalf("read %d records: %v", n, err)
	}
	for i, id := range ids {
		if !entry.has(eventKey(id)) || !entry.has(fieldKey("MsgKey", fmt.Sprint("key-", i))) {
			t.Errorf("the filter misses record %d", i)
		}
	}
	if !entry.has(fieldKey("To_Account", "bob")) {
		t.Errorf("the filter misses To_Account")
	}
	wrong := 0
	for i := range 100000 {
		if entry.has(fieldKey("MsgKey", fmt.Sprint("other-", i))) {
			wrong++
		}
	}
	if wrong > 200 { // about 1 in 2000 expected
		t.Errorf("the filter says yes to %d keys of 100000 it does not hold", wrong)
	}

	if err := eachRecord(block[:len(block)-3], func(int, []byte, []byte) bool { return true }); err == nil {
		t.Errorf("a block cut short reads without an error")
	}
	for _, bad := range []Stored{{Block: 9, Data: []byte{2, 1, 11, 1, 0}}, {Block: 0, Data: b.entry()}, {Block: 9, Data: []byte{1}}} {
		if _, err := decodeEntry(bad); err == nil {
			t.Errorf("entry %+v decodes", bad)
		}
	}
}
