package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

func cmdRun(args []string, stdin io.Reader, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "config file (- for standard input)")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	createTopics := fs.Bool("create-topics", false, "create missing partitioned topics of partitioner rules (and their retry topics) with the partitions they need")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	cfg, err := loadConfig(*path, stdin)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	// From here on every log line is scrubbed of the config's secrets.
	log, _ = newLogger(redact(stderr, cfg.Secrets()), *level)
	ctx, stop := signalContext(log)
	defer stop()
	memLimit, memFrom := setMemoryLimit(os.Getenv, "/proc/self/cgroup", "/sys/fs/cgroup")

	reg, metrics := newRegistry()
	svc, err := newService(cfg, log, withCreateTopics(*createTopics), withMetrics(metrics))
	if err != nil {
		log.Error().Err(err).Msg("start")
		return 1
	}
	for _, set := range svc.breakers.all {
		reg.MustRegister(set.Collector())
	}
	mainH, adminH := adminHandlers(svc, reg, log)
	srv, addr, err := serveHTTP(cfg.Listen, mainH, log)
	if err != nil {
		svc.closeUnstarted()
		log.Error().Err(err).Msg("listen")
		return 1
	}
	servers := []*http.Server{srv}
	started := log.Info().Int("rules", len(svc.all())).Str("brokers", cfg.Kafka.Brokers).Str("listen", addr.String()).
		Bool("admin_token", cfg.Admin.Token != "").Bool("pprof", cfg.Admin.Pprof).
		Int64("go_memory_limit", memLimit).Str("go_memory_limit_from", memFrom)
	if adminH != nil {
		asrv, aaddr, err := serveHTTP(cfg.Admin.Listen, adminH, log)
		if err != nil {
			_ = srv.Close()
			svc.closeUnstarted()
			log.Error().Err(err).Msg("listen (admin)")
			return 1
		}
		servers = append(servers, asrv)
		started = started.Str("admin_listen", aaddr.String())
	}
	started.Msg("started")
	if *path != "-" {
		go newReloader(*path, cfg, svc.runners, log).run(ctx)
	}
	err = svc.run(ctx)
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range servers {
		_ = srv.Shutdown(shutCtx)
	}
	if err != nil {
		log.Error().Err(err).Msg("stopped with errors")
		return 1
	}
	log.Info().Msg("stopped")
	return 0
}

// newLogger is a JSON logger at the named level.
func newLogger(w io.Writer, level string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return zerolog.Nop(), fmt.Errorf("bad -log-level %q", level)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// signalContext ends on the first SIGTERM or SIGINT; a second one exits at
// once with status 1.
func signalContext(log zerolog.Logger) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		s, ok := <-ch
		if !ok {
			return
		}
		log.Info().Str("signal", s.String()).Msg("shutting down: draining in-flight events")
		cancel()
		if s, ok := <-ch; ok {
			log.Warn().Str("signal", s.String()).Msg("second signal: exiting without draining")
			os.Exit(1)
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(ch)
		cancel()
	}
}
