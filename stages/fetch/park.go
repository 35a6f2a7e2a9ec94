package fetch

import (
	"fmt"
	"time"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/record"
)

// parked turns f, which the governor parked until due after the error
// err of its last attempt (nil: no attempt was made), into what the stage
// passes on: f with Parked set, for the delay topic; or, once the task
// has been parked MaxParks times, f as a final error of the last class
// the task met (failure.Parked when it never got an answer).
func (s *Stage) parked(f record.Fetched, due time.Time, err error) record.Fetched {
	if f.Started.IsZero() {
		f.Started = s.cfg.Now()
	}
	f.Elapsed = s.cfg.Now().Sub(f.Started)
	t := f.Task
	if t.Parks < s.cfg.MaxParks {
		f.Parked, f.Err = due, err
		return f
	}
	class, msg := failure.Parked, "no attempt made"
	switch {
	case err != nil:
		class, msg = failure.ClassOf(err), err.Error()
	case t.ParkErr != nil:
		class, msg = failure.Class(t.ParkErr.Class), t.ParkErr.Message
	}
	f.Err = &failure.Error{Class: class, Kind: failure.ErrPermanent, URL: t.URL.Redacted(), Status: f.Status,
		Err: fmt.Errorf("parked %d times (kafka.max_parks), still not due to be tried within kafka.park_after; last: %s", t.Parks, msg)}
	return f
}
