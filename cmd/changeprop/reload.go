package main

import (
	"bytes"
	"context"
	"os"
	"os/signal"
	"reflect"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"changeprop/dispatch"
	"changeprop/rules"
)

// configCheckInterval is how often the config file is checked for changes.
const configCheckInterval = 2 * time.Second

// reloader applies a changed config file to the running rules, on SIGHUP
// or when the file's content changes. Only what dispatch.Tuning holds
// (concurrency, partition_concurrency, key_concurrency, rate_limit) takes
// effect live; other changes are logged as needing a restart. A file that
// fails validation is rejected with its problems, and the running config
// stays.
type reloader struct {
	path    string
	current *rules.Config
	last    []byte
	runners map[string]*dispatch.Runner
	log     zerolog.Logger
}

func newReloader(path string, cfg *rules.Config, runners []*dispatch.Runner, log zerolog.Logger) *reloader {
	rl := &reloader{path: path, current: cfg, runners: map[string]*dispatch.Runner{}, log: log}
	rl.last, _ = os.ReadFile(path)
	for _, r := range runners {
		rl.runners[r.Name()] = r
	}
	return rl
}

// run watches until ctx ends.
func (rl *reloader) run(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	tick := time.NewTicker(configCheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			rl.reload(true)
		case <-tick.C:
			rl.reload(false)
		}
	}
}

// reload reads the file and applies it when it changed (or when forced).
func (rl *reloader) reload(force bool) {
	data, err := os.ReadFile(rl.path)
	if err != nil {
		rl.log.Error().Err(err).Str("config", rl.path).Msg("config reload: read failed; keeping the running config")
		return
	}
	if !force && bytes.Equal(data, rl.last) {
		return
	}
	rl.last = data
	cfg, err := rules.LoadEnv(data, rules.Environment{Getenv: os.Getenv, ReadFile: os.ReadFile})
	if err != nil {
		rl.log.Error().Err(err).Str("config", rl.path).Msg("config reload rejected; keeping the running config")
		return
	}
	rl.apply(cfg)
}

// apply retunes the rules present in both configs (a purge rule's
// instances each).
func (rl *reloader) apply(cfg *rules.Config) {
	old, next := instances(rl.current), instances(cfg)
	for _, base := range cfg.Rules {
		for _, nr := range base.Instances() {
			r, ok := rl.runners[nr.Name]
			prev := old[nr.Name]
			if !ok || prev == nil {
				rl.log.Warn().Str("rule", nr.Name).Msg("config reload: new rule needs a restart")
				continue
			}
			if t := dispatch.TuningOf(nr); !reflect.DeepEqual(t, dispatch.TuningOf(prev)) {
				r.Retune(t)
			}
		}
	}
	for _, base := range rl.current.Rules {
		for _, r := range base.Instances() {
			if next[r.Name] == nil {
				rl.log.Warn().Str("rule", r.Name).Msg("config reload: removed rule keeps running until a restart")
			}
		}
	}
	rl.current = cfg
	rl.log.Info().Str("config", rl.path).Msg("config reloaded")
}

// instances maps the name of every rule instance of cfg to it.
func instances(cfg *rules.Config) map[string]*rules.Rule {
	out := map[string]*rules.Rule{}
	for _, base := range cfg.Rules {
		for _, r := range base.Instances() {
			out[r.Name] = r
		}
	}
	return out
}
