package fetch

import (
	"context"
	"net/url"

	"github.com/sluicehq/sluice/failure"

	"github.com/sluicehq/sluice/record"
)

// Get fetches u once, as any input is fetched (the URL policy, a proxy
// leased from the pool, the transports and the bounds), outside the
// stage's queue: for robots.txt and sitemaps. It first waits for a token
// of the host's bucket in the governor, so the request counts against the
// host's rate, but takes no worker. It returns the status of any answer
// (err is then nil, even for a 404 or a 503), or the classified error
// when no answer came. Safe for concurrent use.
func (s *Stage) Get(ctx context.Context, u *url.URL) (status int, body []byte, err error) {
	if err := s.gov.Take(ctx, u.Hostname()); err != nil {
		return 0, nil, failure.New(failure.Canceled, failure.ErrPermanent, err)
	}
	t := record.Task{Msg: record.Message{URL: u.String()}, URL: u, Enqueued: s.cfg.Now()}
	res, err := s.safeAttempt(ctx, t)
	if res.held > 0 {
		defer s.spool.budget.Give(res.held)
	}
	defer s.ahead.release(res.ahead)
	if res.spool != nil {
		f := record.Fetched{Spool: res.spool}
		if lerr := f.LoadBody(); lerr != nil {
			return res.status, nil, lerr
		}
		res.body = f.Body
	}
	if res.status != 0 {
		return res.status, res.body, nil
	}
	return 0, nil, err
}

func (s *Stage) safeAttempt(ctx context.Context, t record.Task) (res attemptResult, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = failure.Errorf(failure.Internal, "robots fetch panicked: %v", r)
		}
	}()
	return s.attempt(ctx, t, 1, nil, s.cfg.Now(), nil)
}

// CapRate caps host's request rate at r per second from now on (see
// governor.Governor.CapRate): for robots.txt's Crawl-delay.
func (s *Stage) CapRate(host string, r float64) { s.gov.CapRate(host, r) }
