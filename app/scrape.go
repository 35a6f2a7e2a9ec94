package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape fetches and parses the text exposition at http://addr/metrics.
func scrape(ctx context.Context, addr string) (map[string]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape metrics: status %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, fmt.Errorf("scrape metrics: %w", err)
	}
	return fams, nil
}

// sumBy adds up a counter or gauge family's values by one label.
func sumBy(fams map[string]*dto.MetricFamily, name, label string) map[string]float64 {
	out := map[string]float64{}
	f := fams[name]
	if f == nil {
		return out
	}
	for _, m := range f.GetMetric() {
		key := ""
		for _, l := range m.GetLabel() {
			if l.GetName() == label {
				key = l.GetValue()
			}
		}
		switch {
		case m.Counter != nil:
			out[key] += m.GetCounter().GetValue()
		case m.Gauge != nil:
			out[key] += m.GetGauge().GetValue()
		case m.Untyped != nil:
			out[key] += m.GetUntyped().GetValue()
		}
	}
	return out
}

// checkMetrics scrapes the demo's own /metrics and checks that the
// per-proxy request counts add up to the attempts the pool leased and the
// site saw.
func checkMetrics(w io.Writer, addr string, sum summary, siteRequests int64) error {
	fams, err := scrape(context.Background(), addr)
	if err != nil {
		return err
	}
	byProxy := sumBy(fams, "sluice_proxy_requests_total", "proxy")
	var total float64
	ids := make([]string, 0, len(byProxy))
	for id, v := range byProxy {
		total += v
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var leased int64
	for _, v := range sum.PerProxy {
		leased += v
	}
	fmt.Fprintf(w, "metrics: sluice_proxy_requests_total sums to %.0f over %d proxies; the pool leased %d, the site saw %d requests\n",
		total, len(ids), leased, siteRequests)
	if len(sum.PerProxy) > 0 && (int64(total) != leased || int64(total) != siteRequests) {
		return fmt.Errorf("metrics do not add up: %.0f requests counted by proxy, %d leased, %d seen by the site", total, leased, siteRequests)
	}
	return nil
}
