package dedupe

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisLimiter is a Limiter shared by every instance that uses the same
// Redis and prefix. Each key is a sorted set of failure times:
//
//	<prefix>:blacklist:<key>   member "<ms>-<instance>-<seq>", score = failure time (ms)
//
// It holds at most the largest Limit members, none older than the longest
// Period (by the now of the last Failure); Redis expires the whole key one
// longest Period after the last failure. Each call is one Lua script and
// is bounded by DefaultTimeout.
type RedisLimiter struct {
	client    redis.UniversalClient
	prefix    string
	windows   []Window
	maxLimit  int
	maxPeriod time.Duration
	timeout   time.Duration
	inst      string
	seq       atomic.Uint64
	args      []any // window limits and periods (ms), for blockedScript
}

// NewRedisLimiter returns a RedisLimiter (prefix DefaultPrefix when empty).
// It panics if ValidateWindows rejects windows.
func NewRedisLimiter(client redis.UniversalClient, prefix string, windows []Window) *RedisLimiter {
	ml, mp := span(windows)
	if prefix == "" {
		prefix = DefaultPrefix
	}
	l := &RedisLimiter{
		client: client, prefix: prefix, windows: slices.Clone(windows),
		maxLimit: ml, maxPeriod: mp, timeout: DefaultTimeout, inst: randomID(),
	}
	for _, w := range windows {
		l.args = append(l.args, w.Limit, w.Period.Milliseconds())
	}
	return l
}

// Key returns the Redis key of a limiter key.
func (l *RedisLimiter) Key(key string) string { return l.prefix + ":blacklist:" + key }

// blockedScript returns 1 when, for some window (ARGV[2k], ARGV[2k+1] =
// limit, period ms), the failures later than now (ARGV[1]) less the period
// reach the limit.
var blockedScript = redis.NewScript(`
local now = tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  local n = redis.call('ZCOUNT', KEYS[1], '(' .. (now - tonumber(ARGV[i+1])), '+inf')
  if n >= tonumber(ARGV[i]) then return 1 end
end
return 0
`)

// failureScript adds a failure and trims the set.
// ARGV: now (ms), member, longest period (ms), largest limit.
var failureScript = redis.NewScript(`
local now = tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[4]) - 1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 0
`)

// Blocked implements Limiter.
func (l *RedisLimiter) Blocked(ctx context.Context, key string, now time.Time) (bool, error) {
	k := l.Key(key)
	args := make([]any, 0, 1+len(l.args))
	args = append(args, now.UnixMilli())
	args = append(args, l.args...)
	n, err := bounded(ctx, l.timeout, func(ctx context.Context) (int64, error) {
		return blockedScript.Run(ctx, l.client, []string{k}, args...).Int64()
	})
	if err != nil {
		return false, fmt.Errorf("limiter: blocked %s: %w: %w", k, ErrUnavailable, err)
	}
	return n == 1, nil
}

// Failure implements Limiter.
func (l *RedisLimiter) Failure(ctx context.Context, key string, now time.Time) error {
	k := l.Key(key)
	ms := now.UnixMilli()
	member := strconv.FormatInt(ms, 10) + "-" + l.inst + "-" + strconv.FormatUint(l.seq.Add(1), 10)
	_, err := bounded(ctx, l.timeout, func(ctx context.Context) (any, error) {
		return nil, failureScript.Run(ctx, l.client, []string{k}, ms, member, l.maxPeriod.Milliseconds(), l.maxLimit).Err()
	})
	if err != nil {
		return fmt.Errorf("limiter: failure %s: %w: %w", k, ErrUnavailable, err)
	}
	return nil
}
