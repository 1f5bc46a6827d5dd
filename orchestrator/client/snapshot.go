package client

import (
	"context"
	"io"
	"net/http"
)

// Snapshot streams a backup of the server (GET /v1/snapshot, admin only):
// a gzip'd tar of its store, PKI and secret keys (see orchestrator/backup).
// The caller closes the reader; backup.Verify checks it arrived whole.
func (c *Client) Snapshot(ctx context.Context) (io.ReadCloser, error) {
	resp, cancel, err := c.send(ctx, request{method: http.MethodGet, path: "/v1/snapshot", stream: true})
	if err != nil {
		return nil, err
	}
	return &cancelBody{ReadCloser: resp.Body, cancel: cancel}, nil
}
