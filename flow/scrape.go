package flow

import (
	"context"

	"github.com/reugn/go-streams"

	"github.com/sluicehq/sluice/record"
)

// Scrape runs sluice's dataflow, the one chain of the scrape pipeline:
//
//	source ──▶ fetch ──▶ parse ──▶ [archive ──▶ …] ──▶ sink
//
// archive are stages that see every output before the sink, in order
// (the WARC writer, which archives each page durably before the sink
// writes its result); there may be none.
//
// It blocks as Stream does: until the source has stopped (soft ended or its
// input ran out) and everything it read has been written, or until hard
// ended and everything in flight was discarded. It returns the stages'
// errors joined. Each stage may be run once.
func Scrape(hard, soft context.Context, src *Source[record.Task], fetch Processor[record.Task, record.Fetched],
	parse Processor[record.Fetched, record.Output], sink *Sink[record.Output], archive ...Processor[record.Output, record.Output]) error {
	return Stream(hard, soft, src, func(s streams.Source) {
		out := s.Via(fetch).Via(parse)
		for _, a := range archive {
			out = out.Via(a)
		}
		out.To(sink)
	})
}
