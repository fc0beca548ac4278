package dedupe

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisOptions configures a Redis store. Zero values mean the defaults.
type RedisOptions struct {
	// Timeout bounds each call to Redis, whatever the client's own
	// timeouts (DefaultTimeout). Past it the call returns ErrUnavailable.
	Timeout time.Duration
	// ClaimTTL is the claim lifetime of jobs that set none (DefaultClaimTTL).
	ClaimTTL time.Duration
}

// Redis is a Store shared by every instance that uses the same Redis and
// prefix. Each call is one Lua script, so check-and-claim is atomic across
// instances.
//
// Keys (prefix from redis.prefix, DefaultPrefix when empty):
//
//	<prefix>:<namespace>:id:<meta.domain>:<meta.id>   "c|<expiry ms>|<token>" (claim) or "d|<expiry ms>|" (done)
//	<prefix>:<namespace>:sha1:<sha1>                  "d|<expiry ms>|<processing time ms>"
//	<prefix>:<namespace>:root:<root_event.signature>  "d|<expiry ms>|<newest root_event.dt ms>"
//
// Expiry is decided by the time stored in the value, compared with the now
// given to each call, so that tests move time without waiting; Redis
// expires the keys as well (PX of the same length) to reclaim memory.
// The scripts touch the id, sha1 and root keys of a job together, so
// Redis Cluster is not supported (they would live in different slots).
type Redis struct {
	client   redis.UniversalClient
	prefix   string
	timeout  time.Duration
	claimTTL time.Duration
	inst     string // this store's token prefix, random
	seq      atomic.Uint64
}

// NewRedis returns a Redis store over client. The client reconnects by
// itself after an outage.
func NewRedis(client redis.UniversalClient, prefix string, o RedisOptions) *Redis {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.ClaimTTL <= 0 {
		o.ClaimTTL = DefaultClaimTTL
	}
	return &Redis{client: client, prefix: prefix, timeout: o.Timeout, claimTTL: o.ClaimTTL, inst: randomID()}
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// IDKey returns the key of the job's id claim or mark.
func (r *Redis) IDKey(j Job) string {
	return r.prefix + ":" + j.Namespace + ":id:" + j.Domain + ":" + j.ID
}

// SHA1Key returns the key of the job's sha1 mark ("" when it has none).
func (r *Redis) SHA1Key(j Job) string {
	if !j.hasSHA1() {
		return ""
	}
	return r.prefix + ":" + j.Namespace + ":sha1:" + j.SHA1
}

// RootKey returns the key of the job's root signature mark ("" when it has none).
func (r *Redis) RootKey(j Job) string {
	if !j.hasRoot() {
		return ""
	}
	return r.prefix + ":" + j.Namespace + ":root:" + j.RootSignature
}

// The value formats are those listed on Redis. A value that does not parse
// counts as absent. KEYS[2] and KEYS[3] are '' when the rule does not apply.

// claimScript returns the Result as an integer.
// ARGV: now, claim expiry, claim ttl (all ms), token, sha1 bound (ms; the
// sha1 is a duplicate when processed later than it), root dt (ms).
var claimScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local function live(key)
  local v = redis.call('GET', key)
  if not v then return nil end
  local kind, exp, data = string.match(v, '^(%a)|(%-?%d+)|(.*)$')
  if not kind or tonumber(exp) <= now then return nil end
  return kind, data
end
local kind = live(KEYS[1])
if kind == 'd' then return 2 end
if kind == 'c' then return 1 end
if KEYS[2] ~= '' then
  local _, p = live(KEYS[2])
  if p and tonumber(p) and tonumber(p) > tonumber(ARGV[5]) then return 3 end
end
if KEYS[3] ~= '' then
  local _, t = live(KEYS[3])
  if t and tonumber(t) and tonumber(t) > tonumber(ARGV[6]) then return 4 end
end
redis.call('SET', KEYS[1], 'c|' .. ARGV[2] .. '|' .. ARGV[4], 'PX', ARGV[3])
return 0
`)

// confirmScript marks the id done and raises the sha1 and root times.
// ARGV: now, then expiry and ttl (ms) of the id, sha1 and root marks,
// claim time, root dt (ms).
var confirmScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local function raise(key, v, exp, ttl)
  local old = redis.call('GET', key)
  if old then
    local e, t = string.match(old, '^d|(%-?%d+)|(%-?%d+)$')
    if e and tonumber(e) > now and tonumber(t) > tonumber(v) then return end
  end
  redis.call('SET', key, 'd|' .. exp .. '|' .. v, 'PX', ttl)
end
redis.call('SET', KEYS[1], 'd|' .. ARGV[2] .. '|', 'PX', ARGV[3])
if KEYS[2] ~= '' then raise(KEYS[2], ARGV[8], ARGV[4], ARGV[5]) end
if KEYS[3] ~= '' then raise(KEYS[3], ARGV[9], ARGV[6], ARGV[7]) end
return 0
`)

// releaseScript deletes the id key if it still holds the claim ARGV[1].
var releaseScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and string.match(v, '^c|%-?%d+|(.*)$') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

func (r *Redis) token(seq uint64) string { return r.inst + "-" + strconv.FormatUint(seq, 10) }

// Claim implements Store.
func (r *Redis) Claim(ctx context.Context, j Job, now time.Time) (Result, *Claim, error) {
	ttl := claimTTL(&j, r.claimTTL)
	seq := r.seq.Add(1)
	var sha1Bound, rootDT int64
	if j.hasSHA1() {
		sha1Bound = j.sha1Ref().Add(-SHA1Slack).UnixMilli()
	}
	if j.hasRoot() {
		rootDT = j.RootDT.UnixMilli()
	}
	keys := []string{r.IDKey(j), r.SHA1Key(j), r.RootKey(j)}
	code, err := bounded(ctx, r.timeout, func(ctx context.Context) (int64, error) {
		return claimScript.Run(ctx, r.client, keys,
			now.UnixMilli(), now.Add(ttl).UnixMilli(), ttl.Milliseconds(), r.token(seq), sha1Bound, rootDT).Int64()
	})
	if err != nil {
		return Fresh, nil, fmt.Errorf("dedupe: claim %s: %w: %w", keys[0], ErrUnavailable, err)
	}
	res := Result(code)
	if res != Fresh {
		if res < Busy || res > DuplicateRoot {
			return Fresh, nil, fmt.Errorf("dedupe: claim %s: %w: unexpected script result %d", keys[0], ErrUnavailable, code)
		}
		return res, nil, nil
	}
	return Fresh, &Claim{job: j, at: now, seq: seq}, nil
}

// Confirm implements Store.
func (r *Redis) Confirm(ctx context.Context, c *Claim, now time.Time) error {
	if c == nil {
		return nil
	}
	j := c.job
	keys := []string{r.IDKey(j), r.SHA1Key(j), r.RootKey(j)}
	var rootDT int64
	if j.hasRoot() {
		rootDT = j.RootDT.UnixMilli()
	}
	_, err := bounded(ctx, r.timeout, func(ctx context.Context) (any, error) {
		return nil, confirmScript.Run(ctx, r.client, keys, now.UnixMilli(),
			now.Add(IDTTL).UnixMilli(), IDTTL.Milliseconds(),
			now.Add(SHA1TTL).UnixMilli(), SHA1TTL.Milliseconds(),
			now.Add(RootTTL).UnixMilli(), RootTTL.Milliseconds(),
			c.at.UnixMilli(), rootDT).Err()
	})
	if err != nil {
		return fmt.Errorf("dedupe: confirm %s: %w: %w", keys[0], ErrUnavailable, err)
	}
	return nil
}

// Release implements Store.
func (r *Redis) Release(ctx context.Context, c *Claim) error {
	if c == nil {
		return nil
	}
	key := r.IDKey(c.job)
	_, err := bounded(ctx, r.timeout, func(ctx context.Context) (any, error) {
		return nil, releaseScript.Run(ctx, r.client, []string{key}, r.token(c.seq)).Err()
	})
	if err != nil {
		return fmt.Errorf("dedupe: release %s: %w: %w", key, ErrUnavailable, err)
	}
	return nil
}

// bounded runs f with a deadline of d and returns by then even when the
// client ignores contexts (go-redis does unless ContextTimeoutEnabled is
// set; it then waits for its own ReadTimeout, 3s by default). A call that
// overruns finishes in the background, within the client's timeouts.
func bounded[T any](ctx context.Context, d time.Duration, f func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := f(ctx)
		done <- result{v, err}
	}()
	select {
	case res := <-done:
		return res.v, res.err
	case <-ctx.Done():
		select {
		case res := <-done: // finished just in time
			return res.v, res.err
		default:
			var zero T
			return zero, ctx.Err()
		}
	}
}
