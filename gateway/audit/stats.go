package audit

import (
	"sort"
	"sync"
	"time"
)

// DayLayout is the layout of the days Stats counts by.
const DayLayout = "2006-01-02"

// ExchangeCount is the number of released exchanges of one dataset to one
// consumer on one day.
type ExchangeCount struct {
	Day       string
	Dataset   string
	Consumer  string
	Exchanges uint64
}

// DenialCount is the number of denied requests for one reason on one day.
type DenialCount struct {
	Day     string
	Reason  string
	Denials uint64
}

type exchangeKey struct{ day, dataset, consumer string }

type denialKey struct{ day, reason string }

// Stats keeps the aggregates the gateway publishes after the fact (公示):
// exchanges per day, dataset and consumer, and denials per day and reason.
// It holds counts only, never subjects or request identifiers.
//
// Stats is a Sink: register it with WithReplaySink so that it counts the
// entries already in the log while Open loads it, then every new one. An
// entry with decision permit or partial counts as one exchange per dataset
// it names; an entry with decision deny counts as one denial under its
// deny reason ("UNSPECIFIED" when it has none). Entries without a decision
// (grant transitions, corrections) are not counted. Methods are safe for
// concurrent use.
type Stats struct {
	loc *time.Location

	mu        sync.RWMutex
	exchanges map[exchangeKey]uint64
	denials   map[denialKey]uint64
	entries   uint64

	// The day of the last entry counted, formatted once for the many
	// entries of the same day.
	lastDate dayDate
	lastDay  string
}

type dayDate struct {
	year  int
	month time.Month
	day   int
}

var _ EntrySink = (*Stats)(nil)

// NewStats returns empty statistics that count by calendar days in loc
// (UTC when nil); a Chinese deployment passes Asia/Shanghai.
func NewStats(loc *time.Location) *Stats {
	if loc == nil {
		loc = time.UTC
	}
	return &Stats{loc: loc, exchanges: make(map[exchangeKey]uint64), denials: make(map[denialKey]uint64)}
}

// Location returns the time zone that days are counted in.
func (s *Stats) Location() *time.Location { return s.loc }

// Appended implements Sink. Data that is not an entry encoding is ignored
// (the log accepts only valid encodings).
func (s *Stats) Appended(index uint64, data []byte) {
	e, err := Decode(data)
	if err != nil {
		return
	}
	s.AppendedEntry(index, &e)
}

// AppendedEntry implements EntrySink.
func (s *Stats) AppendedEntry(_ uint64, e *Entry) {
	t := e.Time.In(s.loc)
	var date dayDate
	date.year, date.month, date.day = t.Date()
	s.mu.Lock()
	defer s.mu.Unlock()
	if date != s.lastDate || s.lastDay == "" {
		s.lastDate, s.lastDay = date, t.Format(DayLayout)
	}
	day := s.lastDay
	s.entries++
	switch e.Decision {
	case DecisionPermit, DecisionPartial:
		for _, ds := range e.Datasets {
			s.exchanges[exchangeKey{day, ds, e.Consumer}]++
		}
	case DecisionDeny:
		reason := e.DenyReason
		if reason == "" {
			reason = "UNSPECIFIED"
		}
		s.denials[denialKey{day, reason}]++
	}
}

// Entries returns the number of entries seen.
func (s *Stats) Entries() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.entries
}

// Counts returns the exchange and denial counts of the days from fromDay to
// toDay inclusive (both in DayLayout; an empty bound is open), sorted by
// day, then dataset and consumer, or reason.
func (s *Stats) Counts(fromDay, toDay string) ([]ExchangeCount, []DenialCount) {
	in := func(day string) bool {
		return (fromDay == "" || day >= fromDay) && (toDay == "" || day <= toDay)
	}
	s.mu.RLock()
	var ex []ExchangeCount
	for k, n := range s.exchanges {
		if in(k.day) {
			ex = append(ex, ExchangeCount{Day: k.day, Dataset: k.dataset, Consumer: k.consumer, Exchanges: n})
		}
	}
	var dn []DenialCount
	for k, n := range s.denials {
		if in(k.day) {
			dn = append(dn, DenialCount{Day: k.day, Reason: k.reason, Denials: n})
		}
	}
	s.mu.RUnlock()
	sort.Slice(ex, func(i, j int) bool {
		a, b := ex[i], ex[j]
		if a.Day != b.Day {
			return a.Day < b.Day
		}
		if a.Dataset != b.Dataset {
			return a.Dataset < b.Dataset
		}
		return a.Consumer < b.Consumer
	})
	sort.Slice(dn, func(i, j int) bool {
		if dn[i].Day != dn[j].Day {
			return dn[i].Day < dn[j].Day
		}
		return dn[i].Reason < dn[j].Reason
	})
	return ex, dn
}
