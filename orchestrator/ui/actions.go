package ui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/skiff-edge/skiff/configs"
	"github.com/skiff-edge/skiff/orchestrator/api"
)

// recorder keeps the answer of an API call made for the console.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}
func (r *recorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	if r.body.Len() > 4<<20 { // a log read is capped: the download streams
		return len(p), nil
	}
	return r.body.Write(p)
}
func (r *recorder) Flush() {}

// call makes the API call method path (body JSON-encoded if not nil) as
// the user, through the API's own routes and checks, and returns its
// status and body.
func (c *Console) call(r *http.Request, u *user, method, path string, body any) (int, []byte) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return http.StatusInternalServerError, []byte(err.Error())
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(r.Context(), method, path, rd)
	if err != nil {
		return http.StatusBadRequest, []byte(err.Error())
	}
	req.RemoteAddr = r.RemoteAddr
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := &recorder{header: http.Header{}}
	c.api.ServeAs(u.id, rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return rec.status, rec.body.Bytes()
}

// apiMessage is the message of an API error body.
func apiMessage(body []byte) string {
	var e api.ErrorBody
	if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
		return e.Error.Message
	}
	return strings.TrimSpace(string(body))
}

// done ends an action: back to the page it came from with a note, or its
// error with the API's status.
func (c *Console) done(w http.ResponseWriter, r *http.Request, u *user, status int, body []byte, back, note string) {
	if status >= 300 {
		c.render(w, r, "overview", status, &page{Title: "Refused", User: u, Error: apiMessage(body), Data: overviewData{}})
		return
	}
	c.log.Info("console action", "action", note, "by", u.id.String())
	http.Redirect(w, r, back+"?done="+url.QueryEscape(note), http.StatusSeeOther)
}

// scale sets an app's replicas (POST /v1/apps/{name}/scale).
func (c *Console) scale(w http.ResponseWriter, r *http.Request, u *user) {
	name, ok := validName(w, r)
	if !ok {
		return
	}
	n, err := strconv.Atoi(strings.TrimSpace(r.PostFormValue("replicas")))
	if err != nil {
		c.render(w, r, "overview", http.StatusBadRequest, &page{Title: "Refused", User: u, Error: "replicas: want a whole number", Data: overviewData{}})
		return
	}
	status, body := c.call(r, u, "POST", "/v1/apps/"+name+"/scale", api.ScaleRequest{Replicas: &n})
	c.done(w, r, u, status, body, "/ui/apps/"+name, fmt.Sprintf("scaled %s to %d", name, n))
}

// undo rolls an app back to a template of its history (POST
// /v1/apps/{name}/rollback), the previous one by default.
func (c *Console) undo(w http.ResponseWriter, r *http.Request, u *user) {
	name, ok := validName(w, r)
	if !ok {
		return
	}
	req := api.RollbackRequest{TemplateHash: r.PostFormValue("template_hash")}
	status, body := c.call(r, u, "POST", "/v1/apps/"+name+"/rollback", req)
	c.done(w, r, u, status, body, "/ui/apps/"+name, "rolled back "+name)
}

// deletePod deletes a pod (DELETE /v1/pods/{name}); its app replaces it.
func (c *Console) deletePod(w http.ResponseWriter, r *http.Request, u *user) {
	name, ok := validName(w, r)
	if !ok {
		return
	}
	back := "/ui/pods/" + name
	if app := r.PostFormValue("app"); configs.ValidName(app) {
		back = "/ui/apps/" + app
	}
	status, body := c.call(r, u, "DELETE", "/v1/pods/"+name, nil)
	c.done(w, r, u, status, body, back, "deleted pod "+name)
}

// downloadLog sends a container's whole log as a file.
func (c *Console) downloadLog(w http.ResponseWriter, r *http.Request, u *user) {
	name, ok := validName(w, r)
	if !ok {
		return
	}
	q := url.Values{}
	if ct := r.URL.Query().Get("container"); ct != "" {
		q.Set("container", ct)
	}
	req, err := http.NewRequestWithContext(r.Context(), "GET", "/v1/pods/"+name+"/logs?"+q.Encode(), nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.log"`)
	c.api.ServeAs(u.id, w, req)
}

// followLog streams a container's log as server-sent events: its last 200
// lines, then each new one.
func (c *Console) followLog(w http.ResponseWriter, r *http.Request, u *user) {
	name, ok := validName(w, r)
	if !ok {
		return
	}
	q := url.Values{"follow": {"1"}, "tail": {"200"}}
	if ct := r.URL.Query().Get("container"); ct != "" {
		q.Set("container", ct)
	}
	req, err := http.NewRequestWithContext(r.Context(), "GET", "/v1/pods/"+name+"/logs?"+q.Encode(), nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req.RemoteAddr = r.RemoteAddr
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	out := &sseLines{w: w, rc: http.NewResponseController(w), header: http.Header{}}
	fmt.Fprint(w, "retry: 3000\n\n")
	_ = out.rc.Flush()
	c.api.ServeAs(u.id, out, req)
	out.finish()
}

// applyData is the apply page: the pasted text, its lines with the
// errors found at each, and what was applied.
type applyData struct {
	Text    string
	Lines   []srcLine
	Other   []string // errors without a line
	Results []api.ApplyResult
}

type srcLine struct {
	N      int
	Text   string
	Errors []string
}

// applyFile is the name positioned errors give the pasted manifest.
const applyFile = "pasted.toml"

func (c *Console) applyPage(w http.ResponseWriter, r *http.Request, u *user) {
	c.render(w, r, "apply", http.StatusOK, &page{Title: "Apply", Nav: "apply", User: u, Data: applyData{}})
}

// apply decodes the pasted manifest with the CLI's decoder (errors at
// file:line:col with the field) and, if it is good, sends it to the API's
// apply (POST /v1/apply): the whole manifest or nothing.
func (c *Console) apply(w http.ResponseWriter, r *http.Request, u *user) {
	text := strings.ReplaceAll(r.PostFormValue("manifest"), "\r\n", "\n")
	d := applyData{Text: text}
	m, err := configs.ParseManifest(applyFile, []byte(text))
	if err == nil && len(m.Apps) == 0 && len(m.Services) == 0 {
		d.Other = []string{applyFile + ": no apps or services"}
		c.render(w, r, "apply", http.StatusBadRequest, &page{Title: "Apply", Nav: "apply", User: u, Data: d})
		return
	}
	if err != nil {
		byLine := map[int][]string{}
		if list, ok := err.(configs.ErrorList); ok {
			for _, fe := range list {
				if fe.Line > 0 {
					byLine[fe.Line] = append(byLine[fe.Line], fe.Error())
				} else {
					d.Other = append(d.Other, fe.Error())
				}
			}
		} else {
			d.Other = append(d.Other, err.Error())
		}
		for i, line := range strings.Split(text, "\n") {
			d.Lines = append(d.Lines, srcLine{N: i + 1, Text: line, Errors: byLine[i+1]})
		}
		c.render(w, r, "apply", http.StatusBadRequest, &page{Title: "Apply", Nav: "apply", User: u, Data: d,
			Error: fmt.Sprintf("%d error(s): nothing was applied", len(byLine)+len(d.Other))})
		return
	}
	status, body := c.call(r, u, "POST", "/v1/apply", api.ApplyRequest{Manifest: *m})
	if status != http.StatusOK {
		d.Other = append(d.Other, applyFile+": "+apiMessage(body))
		c.render(w, r, "apply", status, &page{Title: "Apply", Nav: "apply", User: u, Data: d, Error: "refused by the API: nothing was applied"})
		return
	}
	var res api.ApplyResponse
	_ = json.Unmarshal(body, &res)
	d.Results = res.Results
	c.log.Info("console apply", "objects", len(res.Results), "by", u.id.String())
	c.render(w, r, "apply", http.StatusOK, &page{Title: "Apply", Nav: "apply", User: u, Data: d, Flash: "applied"})
}
