package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

// Images across the cluster: POST /v1/images/pull pulls an image on
// chosen nodes (or all Ready ones), GET /v1/images?nodes= lists their
// images. The server asks each node's agent (api.NodeImages) at once and
// answers one result per node: a node that fails does not fail the others.

// maxImageFanout bounds the nodes asked at once.
const maxImageFanout = 8

// SetNodeImages sets what pulls and lists the nodes' images. Until it is
// called (or with nil) the image routes answer 503.
func (s *Server) SetNodeImages(n api.NodeImages) {
	if n == nil {
		s.nodeImages.Store(nil)
		return
	}
	s.nodeImages.Store(&n)
}

func (s *Server) getNodeImages() api.NodeImages {
	if p := s.nodeImages.Load(); p != nil {
		return *p
	}
	return nil
}

// imageNodes resolves a node selection: the named nodes, each of which
// must exist and be Ready (else a 400 naming field), or with all every
// node, the ones not Ready answered with an error of their own.
func (s *Server) imageNodes(sel api.NodeSelector, field string) (ready []string, notReady []api.NodeImageResult, err error) {
	var nodes []*api.Node
	if _, err := s.st.List(api.KindNode, &nodes); err != nil {
		return nil, nil, err
	}
	byName := map[string]*api.Node{}
	for _, n := range nodes {
		s.leases.overlay(n)
		byName[n.Name] = n
	}
	if sel.All {
		for _, n := range nodes {
			if n.Ready() {
				ready = append(ready, n.Name)
			} else {
				notReady = append(notReady, api.NodeImageResult{Node: n.Name, Error: "node not Ready: skipped"})
			}
		}
		if len(ready) == 0 && len(notReady) == 0 {
			return nil, nil, conflict("no node has registered yet")
		}
		return ready, notReady, nil
	}
	if len(sel.Names) == 0 {
		return nil, nil, invalid(field, `%s: want "all" or a list of node names`, field)
	}
	seen := map[string]bool{}
	for _, name := range sel.Names {
		if !configs.ValidName(name) {
			return nil, nil, invalid(field, "%s: %q is not a valid node name", field, trimmed(name))
		}
		n := byName[name]
		if n == nil {
			return nil, nil, invalid(field, "%s: no node %s", field, name)
		}
		if !n.Ready() {
			return nil, nil, invalid(field, "%s: node %s is not Ready", field, name)
		}
		if !seen[name] {
			seen[name] = true
			ready = append(ready, name)
		}
	}
	return ready, nil, nil
}

// fanOut runs f for every node, at most maxImageFanout at once, and
// returns the results with extra, sorted by node.
func fanOut(ctx context.Context, nodes []string, extra []api.NodeImageResult, f func(ctx context.Context, node string) api.NodeImageResult) api.NodeImageResults {
	res := make([]api.NodeImageResult, len(nodes))
	sem := make(chan struct{}, maxImageFanout)
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			res[i] = f(ctx, n)
		}()
	}
	wg.Wait()
	res = append(res, extra...)
	slices.SortFunc(res, func(a, b api.NodeImageResult) int { return strings.Compare(a.Node, b.Node) })
	return api.NodeImageResults{Items: res}
}

// nodeImagesOrUnavailable is the NodeImages, or a 503 written.
func (s *Server) nodeImagesOrUnavailable(w http.ResponseWriter) api.NodeImages {
	ni := s.getNodeImages()
	if ni == nil {
		writeJSON(w, http.StatusServiceUnavailable, errBody(api.CodeUnavailable, "no agent on this server to reach the nodes' images"))
	}
	return ni
}

// pullImage: POST /v1/images/pull {"ref": REF, "nodes": [...] | "all"}.
// 200 with one result per node, whether each pulled or not.
func (s *Server) pullImage(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Ref   string          `json:"ref"`
		Nodes json.RawMessage `json:"nodes"`
	}
	if err := s.decode(w, r, &req, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	if strings.TrimSpace(req.Ref) == "" {
		s.writeError(w, r, invalid("ref", "ref: must not be empty"))
		return
	}
	if _, err := name.ParseReference(req.Ref); err != nil {
		s.writeError(w, r, invalid("ref", "ref %q: %v", trimmed(req.Ref), err))
		return
	}
	var sel api.NodeSelector
	if len(req.Nodes) == 0 || json.Unmarshal(req.Nodes, &sel) != nil {
		s.writeError(w, r, invalid("nodes", `nodes: want "all" or a list of node names`))
		return
	}
	nodes, skipped, err := s.imageNodes(sel, "nodes")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ni := s.nodeImagesOrUnavailable(w)
	if ni == nil {
		return
	}
	s.log.Info("pulling an image on nodes", "ref", req.Ref, "nodes", strings.Join(nodes, ","), "by", identityOf(r.Context()))
	res := fanOut(r.Context(), nodes, skipped, func(ctx context.Context, node string) api.NodeImageResult {
		img, err := ni.PullImage(ctx, node, req.Ref)
		if err != nil {
			return api.NodeImageResult{Node: node, Error: imageError(err)}
		}
		return api.NodeImageResult{Node: node, OK: true, Images: []api.ImageInfo{img}}
	})
	writeJSON(w, http.StatusOK, res)
}

// listImages: GET /v1/images?nodes=all|a,b. 200 with one result per node.
func (s *Server) listImages(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query().Get("nodes")
	var sel api.NodeSelector
	switch {
	case q == "all":
		sel.All = true
	case q != "":
		sel.Names = strings.Split(q, ",")
	default:
		s.writeError(w, r, invalid("nodes", `nodes: want "all" or node names separated by commas`))
		return
	}
	nodes, skipped, err := s.imageNodes(sel, "nodes")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ni := s.nodeImagesOrUnavailable(w)
	if ni == nil {
		return
	}
	res := fanOut(r.Context(), nodes, skipped, func(ctx context.Context, node string) api.NodeImageResult {
		imgs, err := ni.ListImages(ctx, node)
		if err != nil {
			return api.NodeImageResult{Node: node, Error: imageError(err)}
		}
		return api.NodeImageResult{Node: node, OK: true, Images: imgs}
	})
	writeJSON(w, http.StatusOK, res)
}

// imageError is a node's error on one line.
func imageError(err error) string {
	msg := strings.Join(strings.Fields(err.Error()), " ")
	if errors.Is(err, api.ErrNodeUnreachable) {
		msg = "node not reachable: " + strings.TrimSuffix(msg, ": "+api.ErrNodeUnreachable.Error())
	}
	return msg
}

// ImagePuller returns what the controllers' pre-pull puts images on nodes
// with: the NodeImages set now or later (SetNodeImages), through
// EnsureImage when it has it (an image a node holds is not pulled again),
// else PullImage. Until one is set it fails with api.ErrNodeUnreachable.
func (s *Server) ImagePuller() *ImagePuller { return &ImagePuller{s: s} }

// ImagePuller puts images on nodes for the controllers (see
// Server.ImagePuller). It satisfies controller.ImagePuller.
type ImagePuller struct{ s *Server }

// EnsureImage makes node hold ref.
func (p *ImagePuller) EnsureImage(ctx context.Context, node, ref string) error {
	if _, err := name.ParseReference(ref); err != nil {
		return fmt.Errorf("image %q: %w", ref, err)
	}
	ni := p.s.getNodeImages()
	if ni == nil {
		return fmt.Errorf("no agent on this server to reach the nodes' images: %w", api.ErrNodeUnreachable)
	}
	var err error
	if e, ok := ni.(api.NodeImageEnsurer); ok {
		_, err = e.EnsureImage(ctx, node, ref)
	} else {
		_, err = ni.PullImage(ctx, node, ref)
	}
	if err != nil {
		return errors.New(imageError(err))
	}
	return nil
}
