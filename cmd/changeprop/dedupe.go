package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"changeprop/dispatch/dedupe"
	"changeprop/rules"
)

// blacklistWindows are the blacklist limiter's windows: a key that failed
// this often within the period is skipped (rules.md "limiters").
var blacklistWindows = []dedupe.Window{
	{Limit: 10, Period: time.Hour},
	{Limit: 100, Period: 7 * 24 * time.Hour},
}

// stores are the dedupe store and the blacklist limiter: in Redis when the
// config has a redis section (shared by every instance), in this process
// otherwise.
type stores struct {
	dedupe  dedupe.Store
	limiter dedupe.Limiter
	client  *redis.Client
}

// redisLogger routes go-redis's own log lines to our log.
type redisLogger struct{ log zerolog.Logger }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.Warn().Msgf(format, v...)
}

func newStores(cfg *rules.Config, log zerolog.Logger) (*stores, error) {
	if cfg.Redis == nil {
		log.Info().Msg("no redis configured: dedupe and limiters live in this process only")
		return &stores{dedupe: dedupe.NewMemory(), limiter: dedupe.NewMemoryLimiter(blacklistWindows)}, nil
	}
	tlsConfig, err := redisTLSConfig(cfg.Redis.TLS, cfg.Redis.Addr)
	if err != nil {
		return nil, err
	}
	redis.SetLogger(redisLogger{log.With().Str("client", "redis").Logger()})
	client := redis.NewClient(&redis.Options{
		Addr:      cfg.Redis.Addr,
		Username:  cfg.Redis.Username,
		Password:  cfg.Redis.Password,
		DB:        cfg.Redis.DB,
		TLSConfig: tlsConfig,
	})
	if err := checkRedis(client, cfg.Redis.Addr, log); err != nil {
		_ = client.Close()
		return nil, err
	}
	return &stores{
		// An outage costs one timeout a second, not one per job.
		dedupe:  dedupe.NewFailFast(dedupe.NewRedis(client, cfg.Redis.Prefix, dedupe.RedisOptions{}), time.Second),
		limiter: dedupe.NewRedisLimiter(client, cfg.Redis.Prefix, blacklistWindows),
		client:  client,
	}, nil
}

// checkRedis fails the start when Redis refuses the credentials or the TLS
// handshake fails; a Redis that does not answer is only logged (dedupe
// runs without it until it is back).
func checkRedis(client *redis.Client, addr string, log zerolog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), startCheck)
	defer cancel()
	err := client.Ping(ctx).Err()
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, refused := range []string{"WRONGPASS", "NOAUTH", "NOPERM", "tls:", "x509:"} {
		if strings.Contains(msg, refused) {
			return fmt.Errorf("redis %s refused the connection: %w (check redis.username, the password: redis.password_file or %s, and redis.tls)",
				addr, err, rules.EnvRedisPassword)
		}
	}
	log.Warn().Err(err).Str("addr", addr).Msg("redis does not answer yet; starting anyway, dedupe runs without it until it does")
	return nil
}

func (s *stores) close() {
	if s.client != nil {
		_ = s.client.Close()
	}
}
