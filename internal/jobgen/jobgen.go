package jobgen

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Schema is the $schema of MediaWiki job events.
const Schema = "/mediawiki/job/1.0.0"

// Topic returns the topic, and stream name, of jobs of jobType.
func Topic(jobType string) string { return "mediawiki.job." + jobType }

// dtLayout is meta.dt: RFC 3339 in UTC with milliseconds.
const dtLayout = "2006-01-02T15:04:05.000Z07:00"

// jobGenStart is where a Gen's own clock starts.
var jobGenStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// signatureKey signs events like EventBus does with $wgSecretKey.
var signatureKey = []byte("changeprop-testkit-secret")

type weighted[T any] struct {
	v T
	w int
}

// jobTypes are the job types Gen.Next draws from, with their weights.
// The weights follow the shape of Wikimedia production: refreshLinks
// dominates, a long tail behind it.
var jobTypes = []weighted[string]{
	{"refreshLinks", 28},
	{"htmlCacheUpdate", 14},
	{"cirrusSearchLinksUpdate", 14},
	{"cdnPurge", 8},
	{"cirrusSearchElasticaWrite", 8},
	{"recentChangesUpdate", 6},
	{"wikibase-addUsagesForPage", 6},
	{"ParsoidCachePrewarm", 6},
	{"categoryMembershipChange", 5},
	{"RecordLintJob", 3},
	{"enotifNotify", 2},
}

type wiki struct{ db, domain string }

var wikis = []weighted[wiki]{
	{wiki{"enwiki", "en.wikipedia.org"}, 34},
	{wiki{"wikidatawiki", "www.wikidata.org"}, 15},
	{wiki{"commonswiki", "commons.wikimedia.org"}, 12},
	{wiki{"dewiki", "de.wikipedia.org"}, 8},
	{wiki{"frwiki", "fr.wikipedia.org"}, 6},
	{wiki{"eswiki", "es.wikipedia.org"}, 4},
	{wiki{"jawiki", "ja.wikipedia.org"}, 4},
	{wiki{"ruwiki", "ru.wikipedia.org"}, 3},
	{wiki{"itwiki", "it.wikipedia.org"}, 3},
	{wiki{"plwiki", "pl.wikipedia.org"}, 2},
	{wiki{"ptwiki", "pt.wikipedia.org"}, 2},
	{wiki{"zhwiki", "zh.wikipedia.org"}, 2},
	{wiki{"enwiktionary", "en.wiktionary.org"}, 2},
	{wiki{"nlwiki", "nl.wikipedia.org"}, 1},
	{wiki{"metawiki", "meta.wikimedia.org"}, 1},
}

// Types returns the job types Next draws from, most frequent first.
func Types() []string {
	out := make([]string, len(jobTypes))
	for i, t := range jobTypes {
		out[i] = t.v
	}
	return out
}

var titleWords = []string{
	"History", "Battle", "River", "List", "Albert", "Einstein", "Paris", "Football", "Season",
	"Church", "Station", "Railway", "Album", "Film", "Village", "County", "Election", "University",
	"Mountain", "Island", "Symphony", "Bridge", "Castle", "Library", "Museum", "Airport", "Lake",
}

// Gen generates realistic MediaWiki job events. The same seed gives
// the same sequence of events. It is safe for concurrent use (the order
// then depends on the callers).
type Gen struct {
	// Now stamps meta.dt and the derived timestamps. Nil means the
	// generator's own clock: 2026-01-01T00:00:00Z, advancing 1–20 ms per
	// event, so output depends on the seed only. Dev mode sets time.Now.
	Now func() time.Time
	// DelayRate is the share of events given a delay_until 1–60 s after
	// their dt (delayed jobs). 0 means none.
	DelayRate float64
	// MinSize and MaxSize, when MaxSize > 0, pad every event to a size in
	// bytes drawn log-uniformly from [MinSize, MaxSize] (small events are
	// the common case), with a params.pages object of page IDs and titles
	// as MediaWiki's batched jobs carry. An event already larger than its
	// draw is left as it is. MaxSize 0 means no padding.
	MinSize, MaxSize int
	// PreciseDT writes meta.dt with microseconds instead of milliseconds,
	// so that a receiver can measure sub-millisecond latencies from it.
	PreciseDT bool
	// Distinct leaves out sha1 and root_event, so that no event is a
	// duplicate of another to a dedupe store: for tests that count
	// deliveries rather than deduplication.
	Distinct bool
	// Unique keeps sha1 and root_event where a job type has them but
	// makes them the event's own, so that no event is a duplicate of
	// another while a dedupe store still does all of its work: for
	// benchmarks that compare a service that deduplicates with one that
	// does not.
	Unique bool

	mu    sync.Mutex
	rand  *rand.Rand
	clock time.Time
}

// New returns a generator seeded with seed.
func New(seed int64) *Gen {
	return &Gen{
		rand:  rand.New(rand.NewPCG(uint64(seed), 0x6a6f6267656e)),
		clock: jobGenStart,
	}
}

// Next returns an event of a job type drawn from the skewed distribution,
// and its topic "mediawiki.job.<type>".
func (g *Gen) Next() (topic string, value []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	jobType := pick(g.rand, jobTypes)
	return Topic(jobType), g.event(jobType)
}

// NextOfType returns an event of jobType, on a wiki drawn from the skewed
// distribution. Unknown types get the common params only.
func (g *Gen) NextOfType(jobType string) []byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.event(jobType)
}

type jobEvent struct {
	Schema     string         `json:"$schema"`
	Meta       jobMeta        `json:"meta"`
	Database   string         `json:"database"`
	Type       string         `json:"type"`
	Params     map[string]any `json:"params"`
	SHA1       string         `json:"sha1,omitempty"`
	RootEvent  *rootEvent     `json:"root_event,omitempty"`
	DelayUntil string         `json:"delay_until,omitempty"`
	// mediawiki_signature, the HMAC of the rest, is appended by event.
}

type jobMeta struct {
	URI       string `json:"uri"`
	RequestID string `json:"request_id"`
	ID        string `json:"id"`
	DT        string `json:"dt"`
	Domain    string `json:"domain"`
	Stream    string `json:"stream"`
}

type rootEvent struct {
	Signature string `json:"signature"`
	DT        string `json:"dt"`
}

// event builds one event; g.mu is held.
func (g *Gen) event(jobType string) []byte {
	r := g.rand
	now := g.now()
	w := pick(r, wikis)
	ns, title := g.page(w.db)
	reqID := uuid(r)

	params := map[string]any{"namespace": ns, "title": title, "requestId": reqID}
	dedupe := true
	root := false
	switch jobType {
	case "refreshLinks":
		params["causeAction"] = pickOf(r, "edit-page", "page-edit", "update-page", "api-purge")
		params["causeAgent"] = pickOf(r, "unknown", "ExampleUser", "InternetArchiveBot")
		params["isOpportunistic"] = r.IntN(4) == 0
		params["pageId"] = 1 + r.IntN(70_000_000)
		root = true
	case "htmlCacheUpdate":
		params["table"] = pickOf(r, "templatelinks", "pagelinks", "imagelinks", "categorylinks")
		params["recursive"] = true
		params["causeAction"] = "page-edit"
		params["causeAgent"] = "unknown"
		root = true
	case "cirrusSearchLinksUpdate":
		params["prioritize"] = r.IntN(5) == 0
		params["cluster"] = nil
		params["update_kind"] = pickOf(r, "page_change", "page_refresh", "rerender")
		params["root_event_time"] = now.Unix()
	case "recentChangesUpdate":
		params["namespace"] = -1
		params["title"] = "RecentChanges"
		params["type"] = pickOf(r, "cacheUpdate", "purge")
	case "cdnPurge":
		dedupe = false
		params["urls"] = []string{
			"https://" + w.domain + "/wiki/" + title,
			"https://" + w.domain + "/w/index.php?title=" + title + "&action=history",
		}
	case "cirrusSearchElasticaWrite":
		dedupe = false
		params["method"] = "sendData"
		params["cluster"] = pickOf(r, "eqiad", "codfw", "cloudelastic")
		params["update_group"] = "page"
		params["retryCount"] = 0
	case "wikibase-addUsagesForPage":
		params["pageId"] = 1 + r.IntN(70_000_000)
		params["usages"] = []map[string]string{
			{"entityId": fmt.Sprintf("Q%d", 1+r.IntN(120_000_000)), "aspect": pickOf(r, "S", "L.en", "T", "O", "C")},
		}
	case "ParsoidCachePrewarm":
		params["pageId"] = 1 + r.IntN(70_000_000)
		params["revId"] = 1 + r.IntN(1_300_000_000)
		params["causeAction"] = "edit"
		params["options"] = map[string]any{}
	case "categoryMembershipChange":
		params["pageId"] = 1 + r.IntN(70_000_000)
		params["revTimestamp"] = now.Add(-time.Duration(r.IntN(60)) * time.Second).Format("20060102150405")
	case "RecordLintJob":
		dedupe = false
		params["revision"] = 1 + r.IntN(1_300_000_000)
		params["errors"] = []any{}
	case "enotifNotify":
		dedupe = false
		params["editor"] = "ExampleUser"
		params["editorID"] = 1 + r.IntN(40_000_000)
		params["timestamp"] = now.Format("20060102150405")
		params["summary"] = "copyedit"
		params["minorEdit"] = false
		params["oldid"] = 1 + r.IntN(1_300_000_000)
		params["watchers"] = []int{1 + r.IntN(40_000_000)}
		params["pageStatus"] = "changed"
	}

	ev := jobEvent{
		Schema: Schema,
		Meta: jobMeta{
			URI:       "https://" + w.domain + "/wiki/Special:Badtitle/JobSpecification",
			RequestID: reqID,
			ID:        uuid(r),
			DT:        now.Format(dtLayout),
			Domain:    w.domain,
			Stream:    Topic(jobType),
		},
		Database: w.db,
		Type:     jobType,
		Params:   params,
	}
	if g.Distinct {
		dedupe, root = false, false
	}
	var nonce []any // what makes two jobs of the same work different (Unique)
	if g.Unique {
		nonce = []any{ev.Meta.ID}
	}
	if dedupe {
		// Like MediaWiki: the hash of what makes two jobs the same work.
		ev.SHA1 = sha1Hex(append([]any{jobType, w.db, ns, title, params["table"], params["type"]}, nonce...)...)
	}
	if root {
		sig := sha1Hex(append([]any{"root", jobType, w.db, ns, title}, nonce...)...)
		rootDT := now.Add(-time.Duration(r.IntN(300_000)) * time.Millisecond)
		ev.RootEvent = &rootEvent{Signature: sig, DT: rootDT.Format(time.RFC3339)}
		params["rootJobSignature"] = sig
		params["rootJobTimestamp"] = rootDT.Format("20060102150405")
	}
	if g.DelayRate > 0 && r.Float64() < g.DelayRate {
		ev.DelayUntil = now.Add(time.Duration(1+r.IntN(60)) * time.Second).Format(time.RFC3339)
	}
	if g.PreciseDT {
		ev.Meta.DT = now.Format(preciseDTLayout)
	}

	// One Marshal; the padding and the signature are spliced in (key order
	// means nothing in JSON): less than half the CPU of marshalling the
	// event again with each (BenchmarkJobGen).
	unsigned, err := json.Marshal(ev)
	if err != nil {
		panic(fmt.Sprintf("testkit: marshal job event: %v", err)) // only plain types above
	}
	if g.MaxSize > 0 {
		lo, hi := max(g.MinSize, 1), max(g.MaxSize, g.MinSize, 1)
		target := int(float64(lo) * math.Pow(float64(hi)/float64(lo), r.Float64()))
		// The signature adds `,"mediawiki_signature":"<40 hex>"`.
		if need := target - len(unsigned) - len(`,"mediawiki_signature":""`) - 2*sha1.Size; need > 0 {
			unsigned = withPages(unsigned, pagesPadding(r, need))
		}
	}
	sum := sign(unsigned)
	out := make([]byte, 0, len(unsigned)+len(`,"mediawiki_signature":""`)+2*sha1.Size)
	out = append(out, unsigned[:len(unsigned)-1]...) // without the closing brace
	out = append(out, `,"mediawiki_signature":"`...)
	out = hex.AppendEncode(out, sum[:])
	return append(out, `"}`...)
}

// signatureSuffix is the length of `,"mediawiki_signature":"<40 hex>"}`,
// the end of every event Gen makes.
const signatureSuffix = len(`,"mediawiki_signature":""}`) + 2*sha1.Size

var closingBrace = []byte{'}'}

// VerifySignature returns an error unless ev, an event Gen made, ends
// with the mediawiki_signature of the rest of it.
func VerifySignature(ev []byte) error {
	const field = `,"mediawiki_signature":"`
	if len(ev) < signatureSuffix || !bytes.HasSuffix(ev, []byte(`"}`)) ||
		!bytes.Equal(ev[len(ev)-signatureSuffix:][:len(field)], []byte(field)) {
		return fmt.Errorf("testkit: no mediawiki_signature at the end of %.80q", ev)
	}
	sum := sign(ev[:len(ev)-signatureSuffix], closingBrace)
	want := hex.EncodeToString(sum[:])
	if got := string(ev[len(ev)-2-2*sha1.Size : len(ev)-2]); got != want {
		return fmt.Errorf("testkit: mediawiki_signature %s, want %s", got, want)
	}
	return nil
}

// signers are HMACs with signatureKey.
var signers = sync.Pool{New: func() any { return hmac.New(sha1.New, signatureKey) }}

// sign returns the mediawiki_signature of the concatenated parts: the
// event without its signature.
func sign(parts ...[]byte) [sha1.Size]byte {
	mac := signers.Get().(hash.Hash)
	defer signers.Put(mac)
	mac.Reset()
	for _, p := range parts {
		mac.Write(p)
	}
	var sum [sha1.Size]byte
	mac.Sum(sum[:0])
	return sum
}

// Restamp sets meta.dt of ev, an event Gen made, to dt in the layout
// it already has (milliseconds or microseconds), and signs it again. It
// works in place, without allocating: a load generator makes its events
// before a run and stamps each as it sends it, so that generation costs
// nothing during the run while meta.dt is still the send time.
func Restamp(ev []byte, dt time.Time) error {
	const at = `"dt":"` // meta comes first, and its dt before any other
	i := bytes.Index(ev, []byte(at))
	if i < 0 || len(ev) < signatureSuffix || !bytes.HasSuffix(ev, []byte(`"}`)) {
		return fmt.Errorf("testkit: not an event of Gen: %.80q", ev)
	}
	i += len(at)
	end := bytes.IndexByte(ev[i:], '"')
	var buf [len(preciseDTLayout)]byte
	var stamp []byte
	switch end {
	case len("2006-01-02T15:04:05.000000Z"):
		stamp = dt.UTC().AppendFormat(buf[:0], preciseDTLayout)
	case len("2006-01-02T15:04:05.000Z"):
		stamp = dt.UTC().AppendFormat(buf[:0], dtLayout)
	default:
		return fmt.Errorf("testkit: meta.dt %.40q is not one Gen writes", ev[i:])
	}
	if len(stamp) != end {
		return fmt.Errorf("testkit: %v does not fit meta.dt %q", dt, ev[i:i+end])
	}
	copy(ev[i:], stamp)
	sum := sign(ev[:len(ev)-signatureSuffix], closingBrace)
	hex.Encode(ev[len(ev)-2-2*sha1.Size:len(ev)-2], sum[:])
	return nil
}

// withPages returns the event ev with params.pages (the JSON object pages)
// first among its params.
func withPages(ev, pages []byte) []byte {
	const at = `"params":{`
	i := bytes.Index(ev, []byte(at))
	if i < 0 {
		panic("testkit: job event without params")
	}
	i += len(at)
	out := make([]byte, 0, len(ev)+len(`"pages":,`)+len(pages))
	out = append(out, ev[:i]...)
	out = append(out, `"pages":`...)
	out = append(out, pages...)
	if ev[i] != '}' {
		out = append(out, ',')
	}
	return append(out, ev[i:]...)
}

// preciseDTLayout is meta.dt with microseconds.
const preciseDTLayout = "2006-01-02T15:04:05.000000Z07:00"

// pagesPadding returns a JSON object of about n bytes, counting the
// `,"pages":` that introduces it: page ID -> [namespace, title].
func pagesPadding(r *rand.Rand, n int) []byte {
	n -= len(`,"pages":`)
	b := make([]byte, 0, n+64)
	b = append(b, '{')
	for len(b) < n-1 {
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = strconv.AppendInt(b, int64(1+r.IntN(70_000_000)), 10)
		b = append(b, `":[0,"`...)
		b = append(b, pickOf(r, titleWords...)...)
		b = append(b, '_')
		b = append(b, pickOf(r, titleWords...)...)
		b = append(b, `"]`...)
	}
	return append(b, '}')
}

// now returns the event time; g.mu is held.
func (g *Gen) now() time.Time {
	if g.Now != nil {
		return g.Now().UTC()
	}
	g.clock = g.clock.Add(time.Duration(1+g.rand.IntN(20)) * time.Millisecond)
	return g.clock
}

// page draws a namespace and title that fit the wiki.
func (g *Gen) page(db string) (int, string) {
	r := g.rand
	switch db {
	case "wikidatawiki":
		if r.IntN(10) == 0 {
			return 120, fmt.Sprintf("Property:P%d", 1+r.IntN(12_000))
		}
		return 0, fmt.Sprintf("Q%d", 1+r.IntN(120_000_000))
	case "commonswiki":
		if r.IntN(5) != 0 {
			return 6, fmt.Sprintf("File:%s_%s_%d.jpg", pickOf(r, titleWords...), pickOf(r, titleWords...), r.IntN(10_000))
		}
	}
	words := make([]string, 1+r.IntN(3))
	for i := range words {
		words[i] = pickOf(r, titleWords...)
	}
	title := strings.Join(words, "_")
	switch n := r.IntN(100); {
	case n < 70:
		return 0, title
	case n < 78:
		return 1, "Talk:" + title
	case n < 86:
		return 2, "User:" + pickOf(r, titleWords...) + fmt.Sprint(r.IntN(1000))
	case n < 92:
		return 10, "Template:" + title
	case n < 97:
		return 14, "Category:" + title
	default:
		return 4, "Wikipedia:" + title
	}
}

func pick[T any](r *rand.Rand, items []weighted[T]) T {
	total := 0
	for _, it := range items {
		total += it.w
	}
	n := r.IntN(total)
	for _, it := range items {
		if n < it.w {
			return it.v
		}
		n -= it.w
	}
	return items[len(items)-1].v
}

func pickOf[T any](r *rand.Rand, items ...T) T { return items[r.IntN(len(items))] }

// uuid returns a random (version 4) UUID drawn from r.
func uuid(r *rand.Rand) string {
	var b [16]byte
	hi, lo := r.Uint64(), r.Uint64()
	for i := range 8 {
		b[i] = byte(hi >> (8 * i))
		b[8+i] = byte(lo >> (8 * i))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func sha1Hex(parts ...any) string {
	h := sha1.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%v\x00", p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// BenchEvents returns n events of jobType padded to 0.5-4 KB, as the
// bench's backlogs are, from a generator seeded with 1, and their mean
// size in bytes: the input of the hot-path benchmarks.
func BenchEvents(jobType string, n int) (events [][]byte, mean int) {
	g := New(1)
	g.MinSize, g.MaxSize = 500, 4000
	events = make([][]byte, n)
	size := 0
	for i := range events {
		events[i] = g.NextOfType(jobType)
		size += len(events[i])
	}
	return events, size / max(n, 1)
}
