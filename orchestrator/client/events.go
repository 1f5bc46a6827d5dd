package client

import (
	"context"
	"net/http"

	"github.com/skiff-edge/skiff/orchestrator/api"
)

// RecordEvent records an event about ev.Object ("kind/name") with POST
// /v1/events; the server aggregates repeats. Agents use it to report what
// they did or saw (image pulls, starts, probe failures, kills).
func (c *Client) RecordEvent(ctx context.Context, ev *api.Event) error {
	return c.do(ctx, request{method: http.MethodPost, path: "/v1/" + api.KindEvent, body: ev}, nil)
}
