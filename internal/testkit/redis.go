package testkit

import (
	"bufio"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisServer is a real redis-server run by a test on a free loopback
// port, without persistence.
type RedisServer struct {
	t    testing.TB
	Addr string
	port int
	opts RedisOptions
	cmd  *exec.Cmd
	out  chan struct{} // closed when the server's output is drained
}

// RedisOptions secure a RedisServer. The zero value is plain TCP without
// authentication.
type RedisOptions struct {
	// TLS, when set, makes the port TLS only, with the CA's server
	// certificate; clients are not asked for certificates.
	TLS *CA
	// Password is the default user's password (requirepass).
	Password string
	// User and UserPassword add an ACL user allowed every command and key.
	User, UserPassword string
}

// StartRedis starts a redis-server for t and stops it when t ends. It
// fails t when redis-server is not installed (`make test` installs it).
func StartRedis(t testing.TB) *RedisServer { return StartRedisWith(t, RedisOptions{}) }

// StartRedisWith is StartRedis with TLS and users.
func StartRedisWith(t testing.TB, opts RedisOptions) *RedisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server is not on PATH: run `make test` (it installs it) or `apt-get install redis-server`: %v", err)
	}
	port, err := FreePort()
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	s := &RedisServer{t: t, port: port, opts: opts, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Start (re)starts the server on its port and waits until it accepts
// connections.
func (s *RedisServer) Start() {
	s.t.Helper()
	args := []string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--loglevel", "notice"}
	if ca := s.opts.TLS; ca != nil {
		args = append(args, "--port", "0", "--tls-port", strconv.Itoa(s.port), "--tls-cert-file", ca.CertFile,
			"--tls-key-file", ca.KeyFile, "--tls-ca-cert-file", ca.CAFile, "--tls-auth-clients", "no")
	}
	if s.opts.Password != "" {
		args = append(args, "--requirepass", s.opts.Password)
	}
	if s.opts.User != "" {
		args = append(args, "--user", s.opts.User, "on", ">"+s.opts.UserPassword, "~*", "&*", "+@all")
	}
	cmd := exec.Command("redis-server", args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		s.t.Fatalf("redis-server: %v", err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("starting redis-server: %v", err)
	}
	ready, drained := make(chan struct{}), make(chan struct{})
	var log strings.Builder
	go func() {
		defer close(drained)
		sc := bufio.NewScanner(out)
		signalled := false
		for sc.Scan() {
			if !signalled {
				log.WriteString(sc.Text() + "\n")
				if strings.Contains(sc.Text(), "Ready to accept connections") {
					close(ready)
					signalled = true
				}
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-drained
		_ = cmd.Wait()
		s.t.Fatalf("redis-server on port %d not ready after 10s:\n%s", s.port, log.String())
	}
	s.cmd, s.out = cmd, drained
}

// Stop kills the server (SIGKILL, like a crash) and waits for it to exit.
func (s *RedisServer) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.out
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Pause stops the process (SIGSTOP): connections hang instead of failing.
func (s *RedisServer) Pause() { _ = s.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused server.
func (s *RedisServer) Resume() { _ = s.cmd.Process.Signal(syscall.SIGCONT) }

// Client returns a client of the server with go-redis's default options
// (as the ACL user, over TLS, when the server has them), closed when the
// test ends.
func (s *RedisServer) Client() *redis.Client {
	o := &redis.Options{Addr: s.Addr, Username: s.opts.User, Password: s.opts.UserPassword}
	if o.Username == "" {
		o.Password = s.opts.Password
	}
	if s.opts.TLS != nil {
		o.TLSConfig = s.opts.TLS.Client
	}
	c := redis.NewClient(o)
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}
