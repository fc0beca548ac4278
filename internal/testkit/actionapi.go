package testkit

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
)

// ActionAPIPath is the path of the Action API endpoint.
const ActionAPIPath = "/w/api.php"

// ActionAPIOptions configures an ActionAPI. The zero value knows no pages.
type ActionAPIOptions struct {
	// Dependents maps a title to the titles of the pages that depend on it,
	// in the order the API lists them; list=backlinks and list=embeddedin
	// both answer from it.
	Dependents map[string][]string
	// Hold, if set, is called before a page of results is answered, with
	// the request and the page's number (0 for the first page of a list).
	// It may block, for instance until the request's context ends; when it
	// returns false nothing is answered (the connection is dropped).
	Hold func(r *http.Request, page int) bool
}

// APIRequest is one list query the ActionAPI answered or dropped.
type APIRequest struct {
	List, Title, Continue string // Continue is the <prefix>continue parameter, "" for a first page
	Page                  int
	Limit                 int
	Host                  string
	Header                http.Header
	Answered              bool
}

// ActionAPI emulates the two list queries of MediaWiki's Action API that
// dependency updates use, over real HTTP:
// action=query&list=backlinks&bltitle=T&bllimit=N and
// action=query&list=embeddedin&eititle=T&eilimit=N, with format=json and
// formatversion=2. It pages its results as MediaWiki does: a page of at
// most the limit (capped at 500, the cap for clients without
// apihighlimits), with {"continue": {"eicontinue": "0|<next>", "continue":
// "-||"}} while more follow; the client sends the continue object's
// members back to get the next page. Other queries get a JSON error
// answer (status 200, as MediaWiki answers them). All methods are safe for
// concurrent use.
type ActionAPI struct {
	opts ActionAPIOptions
	srv  *httptest.Server

	mu   sync.Mutex
	reqs []APIRequest
}

// StartActionAPI starts an ActionAPI on 127.0.0.1. Close it when done.
func StartActionAPI(opts ActionAPIOptions) *ActionAPI {
	a := &ActionAPI{opts: opts}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	return a
}

// URL is the endpoint: http://127.0.0.1:PORT/w/api.php.
func (a *ActionAPI) URL() string { return a.srv.URL + ActionAPIPath }

// Close shuts the server down.
func (a *ActionAPI) Close() { a.srv.Close() }

// Requests returns the list queries received so far, in order.
func (a *ActionAPI) Requests() []APIRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]APIRequest(nil), a.reqs...)
}

// apiLimitMax is the most results a page holds for clients without the
// apihighlimits right.
const apiLimitMax = 500

func (a *ActionAPI) serve(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	fail := func(code, info string) {
		writeJSON(w, http.StatusOK, nil, map[string]any{"error": map[string]string{"code": code, "info": info}})
	}
	if r.URL.Path != ActionAPIPath || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	if q.Get("action") != "query" || q.Get("format") != "json" || q.Get("formatversion") != "2" {
		fail("badvalue", "want action=query&format=json&formatversion=2")
		return
	}
	list := q.Get("list")
	var prefix string
	switch list {
	case "backlinks":
		prefix = "bl"
	case "embeddedin":
		prefix = "ei"
	default:
		fail("badvalue", fmt.Sprintf("Unrecognized value for parameter \"list\": %s.", list))
		return
	}
	title := q.Get(prefix + "title")
	if title == "" {
		fail("missingparam", "The \""+prefix+"title\" parameter must be set.")
		return
	}
	limit := 10 // MediaWiki's default
	if l := q.Get(prefix + "limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 {
			fail("badinteger", "Invalid value \""+l+"\" for integer parameter \""+prefix+"limit\".")
			return
		}
		limit = min(n, apiLimitMax)
	}
	from := 0
	token := q.Get(prefix + "continue")
	if token != "" {
		ns, idx, ok := strings.Cut(token, "|")
		n, err := strconv.Atoi(idx)
		if !ok || ns != "0" || err != nil || n < 0 || q.Get("continue") != "-||" {
			fail("badcontinue", "Invalid continue param. You should pass the original value returned by the previous query.")
			return
		}
		from = n
	}
	rec := APIRequest{List: list, Title: title, Continue: token, Page: from / limit, Limit: limit,
		Host: r.Host, Header: r.Header.Clone()}
	if a.opts.Hold != nil && !a.opts.Hold(r, rec.Page) {
		a.record(rec)
		panic(http.ErrAbortHandler) // drop the connection without an answer
	}
	deps := a.opts.Dependents[title]
	from = min(from, len(deps))
	end := min(from+limit, len(deps))
	items := make([]map[string]any, 0, end-from)
	for i := from; i < end; i++ {
		items = append(items, map[string]any{"pageid": i + 1, "ns": 0, "title": deps[i]})
	}
	answer := map[string]any{"batchcomplete": true, "query": map[string]any{list: items}}
	if end < len(deps) {
		answer["continue"] = map[string]string{prefix + "continue": "0|" + strconv.Itoa(end), "continue": "-||"}
	}
	b, _ := json.Marshal(answer)
	rec.Answered = true
	a.record(rec)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_, _ = w.Write(b)
}

func (a *ActionAPI) record(r APIRequest) {
	a.mu.Lock()
	a.reqs = append(a.reqs, r)
	a.mu.Unlock()
}
