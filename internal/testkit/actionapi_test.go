package testkit

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
)

// TestActionAPIPages walks 1,203 dependents in pages of 500 through the
// continue tokens, and checks the error answers.
func TestActionAPIPages(t *testing.T) {
	deps := make([]string, 1203)
	for i := range deps {
		deps[i] = fmt.Sprintf("Page %d", i)
	}
	a := NewActionAPI(t, ActionAPIOptions{Dependents: map[string][]string{"Template:X": deps}})
	type answer struct {
		Error    *struct{ Code string }
		Continue map[string]string
		Query    struct {
			Embeddedin []struct {
				Title string
				NS    int
			}
		}
	}
	get := func(params url.Values) answer {
		t.Helper()
		resp, err := http.Get(a.URL() + "?" + params.Encode())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ans answer
		if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%d %v", resp.StatusCode, err)
		}
		return ans
	}
	base := url.Values{"action": {"query"}, "format": {"json"}, "formatversion": {"2"}, "list": {"embeddedin"},
		"eititle": {"Template:X"}, "eilimit": {"5000"}}
	var seen []string
	var cont map[string]string
	for page := 0; ; page++ {
		q := url.Values{}
		for k, v := range base {
			q[k] = v
		}
		for k, v := range cont {
			q.Set(k, v)
		}
		ans := get(q)
		if ans.Error != nil {
			t.Fatalf("page %d: error %s", page, ans.Error.Code)
		}
		if len(ans.Query.Embeddedin) > 500 {
			t.Fatalf("page %d has %d results, more than 500", page, len(ans.Query.Embeddedin))
		}
		for _, it := range ans.Query.Embeddedin {
			seen = append(seen, it.Title)
		}
		if cont = ans.Continue; cont == nil {
			break
		}
		if cont["continue"] != "-||" || cont["eicontinue"] == "" {
			t.Fatalf("continue %v", cont)
		}
	}
	if len(seen) != len(deps) || seen[0] != "Page 0" || seen[1202] != "Page 1202" {
		t.Fatalf("walked %d titles", len(seen))
	}
	reqs := a.Requests()
	if len(reqs) != 3 || reqs[2].Page != 2 || reqs[2].Continue != "0|1000" || reqs[0].Limit != 500 || !reqs[1].Answered {
		t.Errorf("requests %+v", reqs)
	}
	for params, code := range map[string]string{
		"action=query&format=json&formatversion=2&list=allpages":                          "badvalue",
		"action=query&format=json&formatversion=2&list=backlinks":                         "missingparam",
		"action=query&format=json&formatversion=2&list=backlinks&bltitle=X&blcontinue=zz": "badcontinue",
		"action=parse&format=json&formatversion=2":                                        "badvalue",
	} {
		q, _ := url.ParseQuery(params)
		if ans := get(q); ans.Error == nil || ans.Error.Code != code {
			t.Errorf("%s: %+v, want error %s", params, ans.Error, code)
		}
	}
}
