package orchestrator

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/skiff-edge/skiff/cluster/pki"
	"github.com/skiff-edge/skiff/orchestrator/agent"
	"github.com/skiff-edge/skiff/orchestrator/api"
	"github.com/skiff-edge/skiff/orchestrator/store"
)

// imagesRouter serves the API's images across the cluster
// (api.NodeImages): the server's own node through its agent in the
// process, the others through their agents' pod IO listener (see
// podIORouter), over the same TLS. pki is nil without cluster mode: then
// only the local node answers.
type imagesRouter struct {
	st        *store.Store
	pki       *pki.PKI
	localNode string
	local     *agent.Agent // nil without --agent
	log       *slog.Logger // nil: slog.Default()
	// agents are the kept-alive connections to the nodes' agents (no
	// header bound: a pull answers when it ends).
	agents agentTransports
}

var _ api.NodeImages = (*imagesRouter)(nil)

// imagePullTimeout bounds one node's pull; a list answers at once.
const (
	imagePullTimeout = 15 * time.Minute
	imageListTimeout = 30 * time.Second
)

func (r *imagesRouter) PullImage(ctx context.Context, node, ref string) (api.ImageInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, imagePullTimeout)
	defer cancel()
	if r.local != nil && node == r.localNode {
		return r.local.PullImage(ctx, ref)
	}
	body, err := json.Marshal(map[string]string{"ref": ref})
	if err != nil {
		return api.ImageInfo{}, err
	}
	var img api.ImageInfo
	err = r.call(ctx, node, http.MethodPost, "/images/pull", body, &img)
	return img, err
}

// EnsureImage pulls ref on node only if the node lacks it (the agent's
// pull route with if_missing; an agent from before it pulls again).
func (r *imagesRouter) EnsureImage(ctx context.Context, node, ref string) (api.ImageInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, imagePullTimeout)
	defer cancel()
	if r.local != nil && node == r.localNode {
		return r.local.EnsureImage(ctx, ref)
	}
	body, err := json.Marshal(map[string]any{"ref": ref, "if_missing": true})
	if err != nil {
		return api.ImageInfo{}, err
	}
	var img api.ImageInfo
	err = r.call(ctx, node, http.MethodPost, "/images/pull", body, &img)
	return img, err
}

var _ api.NodeImageEnsurer = (*imagesRouter)(nil)

func (r *imagesRouter) ListImages(ctx context.Context, node string) ([]api.ImageInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, imageListTimeout)
	defer cancel()
	if r.local != nil && node == r.localNode {
		return r.local.ListImages()
	}
	var imgs []api.ImageInfo
	err := r.call(ctx, node, http.MethodGet, "/images", nil, &imgs)
	return imgs, err
}

// call sends one request to node's agent and decodes its 200 answer into
// out; another answer is an error with the agent's message.
func (r *imagesRouter) call(ctx context.Context, node, method, path string, body []byte, out any) error {
	if r.pki == nil {
		return fmt.Errorf("node %s: no agent of it in this process and no cluster mode to reach it: %w", node, api.ErrNodeUnreachable)
	}
	var n api.Node
	if err := r.st.Get(api.KindNode, node, &n); err != nil {
		return fmt.Errorf("node %s: %v: %w", node, err, api.ErrNodeUnreachable)
	}
	addr, err := agentAddr(&n)
	if err != nil {
		return fmt.Errorf("%v: %w", err, api.ErrNodeUnreachable)
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	// As podIORouter: the node's own transport, accepting only node's
	// certificate. The answer comes when the pull ends: no header
	// timeout beyond ctx's.
	resp, err := r.agents.client(r.st, r.pki, node, addr, 0).Do(req)
	if err != nil {
		return unreachable(r.log, node, addr, err, api.ErrNodeUnreachable)
	}
	defer func() {
		// Read a short rest (the encoder's newline) so that the
		// connection is kept for the next call.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
	}()
	if resp.StatusCode != http.StatusOK {
		var eb struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&eb)
		if eb.Error.Message == "" {
			eb.Error.Message = resp.Status
		}
		if resp.StatusCode == http.StatusNotFound {
			// An agent from before the image routes.
			return fmt.Errorf("node %s's agent serves no images (%s): %w", node, eb.Error.Message, api.ErrNodeUnreachable)
		}
		return fmt.Errorf("%s", eb.Error.Message)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxImagesAnswer+1))
	if err != nil {
		return unreachable(r.log, node, addr, err, api.ErrNodeUnreachable)
	}
	if len(data) > maxImagesAnswer {
		return fmt.Errorf("node %s's answer is over %d KiB, more than an image list needs; refused", node, maxImagesAnswer>>10)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("node %s's answer: %w", node, err)
	}
	return nil
}

// maxImagesAnswer bounds what the server reads of one node's answer to an
// image list or pull: GET /v1/images asks every node at once, and each
// answer is held whole while it is decoded. 1 MiB holds about 1,800 images
// of three long references each (measured: 563 bytes per image in JSON
// with refs of ~110 bytes, TestImagesAnswerBound), far more than the
// store of an edge box; the bound was 16 MiB.
const maxImagesAnswer = 1 << 20
