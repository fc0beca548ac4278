package partition

import "testing"

// The expected values are Kafka's: org.apache.kafka.common.utils.Utils.murmur2
// (as in its own unit test) and the partitions its default partitioner picks.
func TestMurmur2MatchesKafka(t *testing.T) {
	tests := []struct {
		key  string
		want int32
	}{
		{"21", -973932308},
		{"foobar", -790332482},
		{"a-little-bit-long-string", -985981536},
		{"a-little-bit-longer-string", -1486304829},
		{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
		{"abc", 479470107},
	}
	for _, tt := range tests {
		if got := int32(murmur2([]byte(tt.key))); got != tt.want {
			t.Errorf("murmur2(%q) = %d, want %d", tt.key, got, tt.want)
		}
	}
}

func TestForKeyIsStableAndInRange(t *testing.T) {
	for _, n := range []int32{1, 3, 8, 12} {
		for _, k := range []string{"enwiki", "dewiki", "commonswiki", "", "wikidatawiki"} {
			p := ForKey([]byte(k), n)
			if p < 0 || p >= n {
				t.Fatalf("ForKey(%q, %d) = %d, out of range", k, n, p)
			}
			if ForKey([]byte(k), n) != p {
				t.Fatalf("ForKey(%q, %d) not stable", k, n)
			}
		}
	}
}

func BenchmarkForKey(b *testing.B) {
	b.ReportAllocs()
	k := []byte("wikidatawiki")
	for i := 0; i < b.N; i++ {
		ForKey(k, 8)
	}
}
