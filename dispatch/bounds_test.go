package dispatch

import "testing"

func TestRedactURI(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"http://u:pw@h:1/p?q=1", "http://u:xxxxx@h:1/p?q=1"},
		{"http://u@h/p", "http://u@h/p"},
		{"http://h/p@x:y", "http://h/p@x:y"},
		{"http://u:pw@h/%zz", "http://xxxxx@h/%zz"}, // net/url refuses it: cut by hand
		{"http://h/%zz@x", "http://h/%zz@x"},
		{"not a uri", "not a uri"},
	} {
		if got := RedactURI(tt.in); got != tt.want {
			t.Errorf("RedactURI(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
