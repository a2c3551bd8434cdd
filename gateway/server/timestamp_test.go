package server

import (
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// wantTimestamp is the JSON protojson writes for ts, or "" when it refuses.
func wantTimestamp(t testing.TB, ts *timestamppb.Timestamp) string {
	t.Helper()
	b, err := protojson.Marshal(ts)
	if err != nil {
		return ""
	}
	return string(b)
}

// TestAppendTimestamp: the timestamps the answer encoder writes are the
// ones protojson writes, at the ends of the range, around leap days and
// century years, and at random instants with every fraction length; those
// protojson refuses are refused.
func TestAppendTimestamp(t *testing.T) {
	var cases []*timestamppb.Timestamp
	for _, s := range []string{
		"0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z", "1970-01-01T00:00:00Z", "1969-12-31T23:59:59.5Z",
		"2000-02-29T12:00:00Z", "2000-03-01T00:00:00Z", "1900-02-28T23:59:59Z", "1900-03-01T00:00:00Z",
		"2100-02-28T00:00:00Z", "2100-03-01T00:00:00Z", "2024-12-31T23:59:59Z", "2026-11-22T04:39:51.616583251Z",
		"0004-02-29T00:00:00Z", "0400-02-29T00:00:00Z", "1600-12-31T23:59:59Z",
	} {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, timestamppb.New(tm))
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		secs := minTimestamp + r.Int64N(maxTimestamp-minTimestamp+1)
		nanos := r.Int32N(1e9)
		switch r.IntN(4) {
		case 0:
			nanos = 0
		case 1:
			nanos -= nanos % 1e6
		case 2:
			nanos -= nanos % 1e3
		}
		cases = append(cases, &timestamppb.Timestamp{Seconds: secs, Nanos: nanos})
	}
	cases = append(cases,
		&timestamppb.Timestamp{Seconds: minTimestamp - 1}, &timestamppb.Timestamp{Seconds: maxTimestamp + 1},
		&timestamppb.Timestamp{Nanos: -1}, &timestamppb.Timestamp{Nanos: 1e9})
	for _, ts := range cases {
		got, ok := appendTimestamp(nil, ts)
		if want := wantTimestamp(t, ts); string(got) != want || ok != (want != "") {
			t.Fatalf("%v: wrote %s (%v), protojson %s", ts, got, ok, want)
		}
	}
	// A record without one has none written (the encoder checks), and
	// one that is nil is refused, not written as the epoch.
	if _, ok := appendTimestamp(nil, nil); ok {
		t.Fatal("a nil timestamp was written")
	}
}

// TestAppendDuration: durations as protojson writes them (the encoder
// writes an age only when there is one).
func TestAppendDuration(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	cases := []*durationpb.Duration{{}, {Seconds: 1}, {Seconds: -1, Nanos: -500000000}, {Nanos: 1}, {Seconds: 315576000000}, {Seconds: 315576000001}, {Seconds: 1, Nanos: -1}}
	for range 5000 {
		d := time.Duration(r.Int64() >> r.IntN(40))
		cases = append(cases, durationpb.New(d))
	}
	for _, d := range cases {
		got, ok := appendDuration(nil, d)
		want, err := protojson.Marshal(d)
		if string(got) != string(want) || ok != (err == nil) {
			t.Fatalf("%v: wrote %s (%v), protojson %s (%v)", d, got, ok, want, err)
		}
	}
}

func FuzzAppendTimestamp(f *testing.F) {
	f.Add(int64(0), int32(0))
	f.Add(int64(minTimestamp), int32(999999999))
	f.Add(int64(maxTimestamp), int32(1000))
	f.Add(int64(951782400), int32(5e8)) // 2000-02-29
	f.Fuzz(func(t *testing.T, secs int64, nanos int32) {
		ts := &timestamppb.Timestamp{Seconds: secs, Nanos: nanos}
		got, ok := appendTimestamp(nil, ts)
		if want := wantTimestamp(t, ts); string(got) != want || ok != (want != "") {
			t.Fatalf("%d.%s: wrote %s (%v), protojson %s", secs, strconv.Itoa(int(nanos)), got, ok, want)
		}
	})
}

func BenchmarkAppendTimestamp(b *testing.B) {
	ts := timestamppb.New(time.Date(2026, 11, 22, 4, 39, 51, 616583251, time.UTC))
	buf := make([]byte, 0, 64)
	for b.Loop() {
		buf, _ = appendTimestamp(buf[:0], ts)
	}
}
