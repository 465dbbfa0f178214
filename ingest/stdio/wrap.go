package stdio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/mcpwatch/mcpwatch/ingest/mcp"
)

// Wrap starts cmd as a stdio MCP server and relays between it and the client on clientIn and
// clientOut (see [Relay]), auditing every message to pub. cmd must not be started and must leave
// Stdin and Stdout unset; its Stderr defaults to [Config.Stderr].
//
// Shutdown follows the stdio transport: when the client closes clientIn, the server's stdin is
// closed, and a server still running after [Config.Grace] gets SIGTERM, then SIGKILL after as
// long again. Signals from [Config.Signals] are forwarded to the server; the end of ctx is
// handled like a SIGTERM. Wrap returns when the server has exited: nil for exit status 0, else
// the [*exec.ExitError] (or the relay's error).
func Wrap(ctx context.Context, cfg Config, clientIn io.Reader, clientOut io.Writer, cmd *exec.Cmd, pub mcp.Publisher, log *slog.Logger) error {
	if cmd == nil || cmd.Process != nil {
		return errors.New("stdio: wrap needs a command not yet started")
	}
	if cmd.Stdin != nil || cmd.Stdout != nil {
		return errors.New("stdio: the wrapped command's stdin and stdout belong to the wrapper")
	}
	if cfg.ServerName == "" {
		cfg.ServerName = filepath.Base(cmd.Path)
	}
	r, err := newRelay(cfg, clientOut, pub, log)
	if err != nil {
		return err
	}
	cfg = r.cfg
	if cmd.Stderr == nil {
		cmd.Stderr = cfg.Stderr
	}
	serverIn, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("stdio: %w", err)
	}
	serverOut, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("stdio: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("stdio: start %s: %w", cmd.Path, err)
	}
	r.log.Info("wrapped MCP server started", "pid", cmd.Process.Pid, "cmd", cmd.Path)

	// clientDone closes when the client has closed its input (and the server's stdin is closed).
	clientDone := make(chan struct{})
	in := &closeNotifier{WriteCloser: serverIn, done: clientDone}
	relayDone := make(chan error, 1)
	go func() { relayDone <- r.run(context.WithoutCancel(ctx), clientIn, in, serverOut) }()

	var relayErr error
	// Shutdown escalates: stdin closed, then SIGTERM, then SIGKILL, each after the grace period.
	const (
		running = iota
		stdinClosed
		terminated
		killed
	)
	stage := running
	var escalate <-chan time.Time
	advance := func() {
		switch stage {
		case running, stdinClosed:
			r.log.Warn("terminating the wrapped server", "grace", cfg.Grace)
			_ = cmd.Process.Signal(syscall.SIGTERM)
			stage, escalate = terminated, time.After(cfg.Grace)
		case terminated:
			r.log.Warn("wrapped server ignored SIGTERM: killing it")
			_ = cmd.Process.Kill()
			stage, escalate = killed, nil
		}
	}
	ctxDone := ctx.Done()
	for exited := false; !exited; {
		select {
		case relayErr = <-relayDone:
			// The server closed its stdout: it has exited or is about to.
			exited = true
		case <-clientDone:
			clientDone = nil
			if stage == running {
				stage, escalate = stdinClosed, time.After(cfg.Grace)
			}
		case sig := <-cfg.Signals:
			if s, ok := sig.(syscall.Signal); ok {
				_ = cmd.Process.Signal(s)
			}
		case <-ctxDone:
			ctxDone = nil
			if stage < terminated {
				advance()
			}
		case <-escalate:
			advance()
		}
	}
	// stdout is closed; a server that closed it but keeps running is stopped the same way.
	waitDone := make(chan error, 1)
	go func() { waitDone <- cmd.Wait() }()
	var waitErr error
	select {
	case waitErr = <-waitDone:
	case <-time.After(cfg.Grace):
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case waitErr = <-waitDone:
		case <-time.After(cfg.Grace):
			_ = cmd.Process.Kill()
			waitErr = <-waitDone
		}
	}
	if waitErr != nil {
		return waitErr
	}
	return relayErr
}

// closeNotifier closes done when the writer is closed.
type closeNotifier struct {
	io.WriteCloser
	done chan struct{}
}

func (c *closeNotifier) Close() error {
	err := c.WriteCloser.Close()
	close(c.done)
	return err
}
