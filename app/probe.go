package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Probe is `pipeline probe`: it GETs url (the /readyz or /healthz of a
// running pipeline) and fails unless the answer is 200. It is the
// container healthcheck of an image that has no shell or curl.
func Probe(ctx context.Context, url string, timeout time.Duration, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return usagef("url: %v", err)
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("probe %s: status %d: %s", url, resp.StatusCode, body)
	}
	_, err = fmt.Fprintf(stdout, "%s: %s\n", url, body)
	return err
}
