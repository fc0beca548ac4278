package jobgen

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestJobGenFields(t *testing.T) {
	tests := []struct {
		name string
		next func(*Gen) (string, []byte)
	}{
		{"Next", (*Gen).Next},
	}
	for _, jt := range append(Types(), "someUnknownJob") {
		tests = append(tests, struct {
			name string
			next func(*Gen) (string, []byte)
		}{"NextOfType " + jt, func(g *Gen) (string, []byte) { return Topic(jt), g.NextOfType(jt) }})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := New(42)
			for range 200 {
				topic, v := tt.next(g)
				var ev struct {
					Schema string `json:"$schema"`
					Meta   struct {
						URI, RequestID, ID, DT, Domain, Stream string
					} `json:"meta"`
					Database  string         `json:"database"`
					Type      string         `json:"type"`
					Params    map[string]any `json:"params"`
					Signature string         `json:"mediawiki_signature"`
				}
				if err := json.Unmarshal(v, &ev); err != nil {
					t.Fatalf("%s: %v", v, err)
				}
				var meta map[string]string
				var raw map[string]json.RawMessage
				_ = json.Unmarshal(v, &raw)
				if err := json.Unmarshal(raw["meta"], &meta); err != nil {
					t.Fatalf("meta: %v", err)
				}
				if ev.Schema != Schema || ev.Type == "" || ev.Database == "" || ev.Signature == "" ||
					topic != "mediawiki.job."+ev.Type || meta["stream"] != topic ||
					meta["uri"] != "https://"+meta["domain"]+"/wiki/Special:Badtitle/JobSpecification" ||
					len(meta["id"]) != 36 || meta["request_id"] != ev.Params["requestId"] {
					t.Fatalf("bad event %s", v)
				}
				if dt, err := time.Parse(time.RFC3339, meta["dt"]); err != nil || dt.Location() != time.UTC {
					t.Fatalf("meta.dt %q: %v", meta["dt"], err)
				}
				if _, ok := ev.Params["title"]; !ok {
					t.Fatalf("no params.title: %s", v)
				}
			}
		})
	}
}

func TestJobGenDeterministic(t *testing.T) {
	tests := []struct {
		a, b int64
		same bool
	}{{1, 1, true}, {99, 99, true}, {1, 2, false}}
	for _, tt := range tests {
		ga, gb := New(tt.a), New(tt.b)
		same := true
		for range 100 {
			ta, va := ga.Next()
			tb, vb := gb.Next()
			if ta != tb || !bytes.Equal(va, vb) {
				same = false
			}
		}
		if same != tt.same {
			t.Errorf("seeds %d and %d: same output %v, want %v", tt.a, tt.b, same, tt.same)
		}
	}
}

func TestJobGenSkew(t *testing.T) {
	g := New(5)
	types, wikis := map[string]int{}, map[string]int{}
	const n = 5000
	for range n {
		_, v := g.Next()
		var ev struct{ Type, Database string }
		if err := json.Unmarshal(v, &ev); err != nil {
			t.Fatal(err)
		}
		types[ev.Type]++
		wikis[ev.Database]++
	}
	if types["refreshLinks"] < n/5 || types["refreshLinks"] < 2*types["cdnPurge"] || len(types) < 8 {
		t.Errorf("job types not skewed toward refreshLinks: %v", types)
	}
	if wikis["enwiki"] < n/4 || wikis["enwiki"] < 2*wikis["dewiki"] || len(wikis) < 10 {
		t.Errorf("wikis not skewed toward enwiki: %v", wikis)
	}
}

func TestJobGenNowAndDelay(t *testing.T) {
	at := time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)
	g := New(1)
	g.Now = func() time.Time { return at }
	g.DelayRate = 1
	var ev struct {
		Meta       struct{ DT string } `json:"meta"`
		DelayUntil string              `json:"delay_until"`
	}
	if err := json.Unmarshal(g.NextOfType("cirrusSearchElasticaWrite"), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Meta.DT != "2030-05-06T07:08:09.000Z" {
		t.Errorf("meta.dt = %q", ev.Meta.DT)
	}
	d, err := time.Parse(time.RFC3339, ev.DelayUntil)
	if err != nil || !d.After(at) || d.Sub(at) > time.Minute {
		t.Errorf("delay_until = %q (%v), want within a minute after dt", ev.DelayUntil, err)
	}
	if _, v := New(1).Next(); strings.Contains(string(v), "delay_until") {
		t.Errorf("delay_until without DelayRate: %s", v)
	}
}

func TestJobGenSize(t *testing.T) {
	tests := []struct {
		name     string
		min, max int
	}{
		{"0.5-4KB", 512, 4096},
		{"fixed 2KB", 2048, 2048},
		{"below natural size", 100, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := New(7)
			g.MinSize, g.MaxSize = tt.min, tt.max
			small, large := 0, 0
			for range 500 {
				_, v := g.Next()
				if !json.Valid(v) {
					t.Fatalf("not JSON: %s", v)
				}
				checkSignature(t, v)
				if bytes.Contains(v, []byte(`"pages":`)) {
					var ev struct {
						Params struct {
							Title string                     `json:"title"`
							Pages map[string]json.RawMessage `json:"pages"`
						} `json:"params"`
					}
					if err := json.Unmarshal(v, &ev); err != nil || ev.Params.Title == "" || ev.Params.Pages == nil {
						t.Fatalf("padding not among the params (%v): %s", err, v)
					}
				}
				natural := len(v) < 1500 && !bytes.Contains(v, []byte(`"pages":`))
				switch {
				case natural && tt.max < 1000:
					// events larger than the draw are left alone
				case len(v) < tt.min-64 || len(v) > tt.max+64:
					t.Fatalf("size %d outside [%d, %d]: %s", len(v), tt.min, tt.max, v)
				}
				if len(v) < (tt.min+tt.max)/2 {
					small++
				} else {
					large++
				}
			}
			if tt.min == 512 && (small < large || large == 0) {
				t.Errorf("sizes not skewed toward small: %d small, %d large", small, large)
			}
		})
	}
}

// checkSignature fails t unless v ends with a mediawiki_signature that is
// the HMAC of the event without it.
func checkSignature(t *testing.T, v []byte) {
	t.Helper()
	const field = `,"mediawiki_signature":"`
	i := bytes.LastIndex(v, []byte(field))
	if i < 0 || !bytes.HasSuffix(v, []byte(`"}`)) {
		t.Fatalf("no signature at the end: %s", v)
	}
	unsigned := append(append([]byte{}, v[:i]...), '}')
	mac := hmac.New(sha1.New, signatureKey)
	mac.Write(unsigned)
	if got, want := string(v[i+len(field):len(v)-2]), hex.EncodeToString(mac.Sum(nil)); got != want {
		t.Fatalf("signature %s, want %s", got, want)
	}
	if err := VerifySignature(v); err != nil {
		t.Fatalf("VerifySignature: %v", err)
	}
	bad := append([]byte(nil), v...)
	bad[len(bad)/2] ^= 1
	if VerifySignature(bad) == nil {
		t.Fatal("VerifySignature took an event changed after signing")
	}
}

func BenchmarkJobGen(b *testing.B) {
	g := New(1)
	g.MinSize, g.MaxSize = 512, 4096
	g.Unique = true
	b.ReportAllocs()
	for b.Loop() {
		g.Next()
	}
}

func TestJobGenPreciseDT(t *testing.T) {
	at := time.Date(2030, 5, 6, 7, 8, 9, 123456000, time.UTC)
	g := New(1)
	g.Now = func() time.Time { return at }
	g.PreciseDT = true
	var ev struct {
		Meta struct{ DT string } `json:"meta"`
	}
	if err := json.Unmarshal(g.NextOfType("refreshLinks"), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Meta.DT != "2030-05-06T07:08:09.123456Z" {
		t.Errorf("meta.dt = %q", ev.Meta.DT)
	}
}

// TestJobGenUnique: with Unique, the job types that carry sha1 and
// root_event still do, and no two events share either.
func TestJobGenUnique(t *testing.T) {
	g := New(3)
	g.Unique = true
	sha1s, roots := map[string]bool{}, map[string]bool{}
	for range 5000 {
		_, v := g.Next()
		var ev struct {
			SHA1      string `json:"sha1"`
			RootEvent *struct {
				Signature string `json:"signature"`
			} `json:"root_event"`
		}
		if err := json.Unmarshal(v, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.SHA1 != "" {
			if sha1s[ev.SHA1] {
				t.Fatalf("sha1 %s twice", ev.SHA1)
			}
			sha1s[ev.SHA1] = true
		}
		if ev.RootEvent != nil {
			if roots[ev.RootEvent.Signature] {
				t.Fatalf("root signature %s twice", ev.RootEvent.Signature)
			}
			roots[ev.RootEvent.Signature] = true
		}
	}
	if len(sha1s) < 1000 || len(roots) < 1000 {
		t.Errorf("%d sha1s and %d root signatures in 5000 events: Unique dropped them", len(sha1s), len(roots))
	}
}

// TestRestamp: meta.dt is the new time in the event's own layout, the
// signature is valid again, and nothing else changes.
func TestRestamp(t *testing.T) {
	at := time.Date(2031, 2, 3, 4, 5, 6, 789012000, time.UTC)
	for _, precise := range []bool{false, true} {
		g := New(5)
		g.PreciseDT = precise
		g.MinSize, g.MaxSize = 512, 4096
		for range 50 {
			_, v := g.Next()
			orig := append([]byte(nil), v...)
			if err := Restamp(v, at); err != nil {
				t.Fatal(err)
			}
			checkSignature(t, v)
			var before, after map[string]any
			if err := json.Unmarshal(orig, &before); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(v, &after); err != nil {
				t.Fatal(err)
			}
			want := "2031-02-03T04:05:06.789Z"
			if precise {
				want = "2031-02-03T04:05:06.789012Z"
			}
			if dt := after["meta"].(map[string]any)["dt"]; dt != want {
				t.Fatalf("meta.dt = %v, want %s", dt, want)
			}
			before["meta"].(map[string]any)["dt"] = want
			delete(before, "mediawiki_signature")
			delete(after, "mediawiki_signature")
			if b, a := fmt.Sprint(before), fmt.Sprint(after); b != a {
				t.Fatalf("restamping changed more than meta.dt:\n%s\n%s", b, a)
			}
		}
	}
	if err := Restamp([]byte(`{"meta":{"id":"x"}}`), at); err == nil {
		t.Error("restamped an event without meta.dt")
	}
}

func BenchmarkRestamp(b *testing.B) {
	g := New(1)
	g.MinSize, g.MaxSize = 512, 4096
	g.PreciseDT = true
	_, v := g.Next()
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if err := Restamp(v, now); err != nil {
			b.Fatal(err)
		}
	}
}
