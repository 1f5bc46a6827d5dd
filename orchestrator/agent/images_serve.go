package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/skiff-edge/skiff/containers/images"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

// fullImageStore is what the image routes need of the node's store
// beyond imageStore. Satisfied by *images.Store.
type fullImageStore interface {
	Pull(ctx context.Context, ref string, progress func(images.Progress)) (images.Image, error)
	List() ([]images.Image, error)
}

var _ fullImageStore = (*images.Store)(nil)

// errNoImageStore: the agent has not opened its runtime yet.
var errNoImageStore = errors.New("the agent's image store is not open yet")

func (a *Agent) imageStore() (fullImageStore, error) {
	a.mu.Lock()
	ps := a.pods
	a.mu.Unlock()
	if ps == nil {
		return nil, errNoImageStore
	}
	st, ok := ps.images.(fullImageStore)
	if !ok {
		return nil, errNoImageStore
	}
	return st, nil
}

// PullImage pulls ref (again, even if present: a tag may have moved) into
// this node's image store.
func (a *Agent) PullImage(ctx context.Context, ref string) (api.ImageInfo, error) {
	st, err := a.imageStore()
	if err != nil {
		return api.ImageInfo{}, err
	}
	img, err := st.Pull(ctx, ref, nil)
	if err != nil {
		return api.ImageInfo{}, err
	}
	a.log.Info("image pulled on request", "ref", ref, "digest", img.ManifestDigest)
	return imageInfo(img), nil
}

// EnsureImage puts ref into this node's image store if it is not there
// (the pre-pull before an update): an image the node holds is not pulled
// again, as when a pod starts.
func (a *Agent) EnsureImage(ctx context.Context, ref string) (api.ImageInfo, error) {
	a.mu.Lock()
	ps := a.pods
	a.mu.Unlock()
	if ps == nil {
		return api.ImageInfo{}, errNoImageStore
	}
	img, err := ps.images.Ensure(ctx, ref, nil)
	if err != nil {
		return api.ImageInfo{}, err
	}
	a.log.Info("image ensured on request", "ref", ref, "digest", img.ManifestDigest)
	return imageInfo(img), nil
}

// ListImages lists this node's image store.
func (a *Agent) ListImages() ([]api.ImageInfo, error) {
	st, err := a.imageStore()
	if err != nil {
		return nil, err
	}
	imgs, err := st.List()
	if err != nil {
		return nil, err
	}
	out := make([]api.ImageInfo, 0, len(imgs))
	for _, img := range imgs {
		out = append(out, imageInfo(img))
	}
	return out, nil
}

func imageInfo(img images.Image) api.ImageInfo {
	return api.ImageInfo{Refs: img.Refs, ID: img.ID, Digest: img.ManifestDigest, Size: img.Size, Created: img.Created}
}

// servePullImage: POST /images/pull {"ref": REF, "if_missing": BOOL}, the
// image as JSON. The
// server has validated ref; the store parses it again.
func (a *Agent) servePullImage(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Ref string `json:"ref"`
		// IfMissing: pull only if the node lacks it (EnsureImage).
		IfMissing bool `json:"if_missing"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil || req.Ref == "" {
		podIOError(w, http.StatusBadRequest, api.CodeInvalid, "want a pull request with a ref")
		return
	}
	pull := a.PullImage
	if req.IfMissing {
		pull = a.EnsureImage
	}
	img, err := pull(r.Context(), req.Ref)
	if err != nil {
		podIOError(w, http.StatusBadGateway, api.CodeInternal, err.Error()) // "pull REF: ..."
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(img)
}

// serveListImages: GET /images, this node's images as a JSON list.
func (a *Agent) serveListImages(w http.ResponseWriter, r *http.Request) {
	imgs, err := a.ListImages()
	if err != nil {
		podIOError(w, http.StatusInternalServerError, api.CodeInternal, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(imgs)
}
