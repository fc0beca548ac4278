package rules

import (
	"errors"
	"net/http"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	def := ruleWith(t, "")
	custom := ruleWith(t, "retry_on: {status: ['5xx', 429]}\nignore: {status: [404, 412]}")
	readonly := http.Header{"X-Readonly": {"true"}}
	tests := []struct {
		rule   *Rule
		status int
		header http.Header
		err    error
		want   Outcome
	}{
		{def, 200, nil, nil, Done},
		{def, 204, nil, nil, Done},
		{def, 301, nil, nil, Done},
		{def, 412, nil, nil, Ignored},
		{def, 500, nil, nil, Retry},
		{def, 503, nil, nil, Retry},
		{def, 509, nil, nil, Retry},
		{def, 510, nil, nil, Failed},
		{def, 500, readonly, nil, RetryReadonly},
		{def, 503, readonly, nil, Retry},
		{def, 0, nil, errors.New("connection refused"), Retry}, // 504
		{def, 400, nil, nil, Failed},
		{def, 404, nil, nil, Failed},
		{def, 405, nil, nil, Failed},
		{def, 422, nil, nil, Failed},
		{def, 429, nil, nil, Failed},
		{def, 100, nil, nil, Failed},
		{custom, 429, nil, nil, Retry},
		{custom, 599, nil, nil, Retry},
		{custom, 404, nil, nil, Ignored},
		{custom, 0, nil, errors.New("timeout"), Retry},
	}
	for _, tt := range tests {
		var header func(string) string
		if tt.header != nil {
			header = tt.header.Get
		}
		if got := tt.rule.Classify(tt.status, header, tt.err); got != tt.want {
			t.Errorf("Classify(%d, %v, %v) = %v, want %v", tt.status, tt.header, tt.err, got, tt.want)
		}
	}
	noRetry := ruleWith(t, "retry_on: {status: [429]}")
	if got := noRetry.Classify(0, nil, errors.New("timeout")); got != Failed {
		t.Errorf("network error without 504 in retry_on: %v", got)
	}
}

func TestOutcomeString(t *testing.T) {
	for o, want := range map[Outcome]string{Done: "done", Ignored: "ignored", Retry: "retry", RetryReadonly: "retry_readonly", Failed: "error"} {
		if o.String() != want {
			t.Errorf("%d: %q", o, o.String())
		}
	}
}

func TestStatusPatterns(t *testing.T) {
	tests := []struct {
		pattern string
		ok      bool
		match   []int
		miss    []int
	}{
		{"50x", true, []int{500, 509}, []int{510, 499}},
		{"5xx", true, []int{500, 599}, []int{600, 499}},
		{"4xx", true, []int{400, 429}, []int{500}},
		{"412", true, []int{412}, []int{413}},
		{"5X3", true, []int{503, 593}, []int{504}},
		{"5y0", false, nil, nil},
		{"50", false, nil, nil},
		{"5000", false, nil, nil},
		{"700", false, nil, nil},
	}
	for _, tt := range tests {
		p, ok := parseStatusPattern(tt.pattern)
		if ok != tt.ok {
			t.Errorf("%q: ok=%v", tt.pattern, ok)
			continue
		}
		for _, s := range tt.match {
			if !p.match(s) {
				t.Errorf("%q should match %d", tt.pattern, s)
			}
		}
		for _, s := range tt.miss {
			if p.match(s) {
				t.Errorf("%q should not match %d", tt.pattern, s)
			}
		}
	}
}

func TestRetryDelayFor(t *testing.T) {
	r := ruleWith(t, "retry_delay: 1000\nretry_factor: 6")
	for n, want := range []time.Duration{time.Second, 6 * time.Second, 36 * time.Second} {
		if got := r.RetryDelayFor(n); got != want {
			t.Errorf("RetryDelayFor(%d) = %v, want %v", n, got, want)
		}
	}
}
