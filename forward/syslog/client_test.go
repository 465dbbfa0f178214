package syslog

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// collector is an in-process TCP listener for fault injection: handle decides what happens to
// the n-th connection.
type collector struct {
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	got  [][]byte // bytes received per connection
	conn int
}

func newCollector(t *testing.T, handle func(n int, c *net.TCPConn) []byte) *collector {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	col := &collector{ln: ln}
	col.wg.Add(1)
	go func() {
		defer col.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			col.mu.Lock()
			n := col.conn
			col.conn++
			col.got = append(col.got, nil)
			col.mu.Unlock()
			col.wg.Add(1)
			go func() {
				defer col.wg.Done()
				b := handle(n, c.(*net.TCPConn))
				col.mu.Lock()
				col.got[n] = b
				col.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); col.wg.Wait() })
	return col
}

func (c *collector) received() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.got...)
}

func testBatch(size int) []byte {
	f, _ := NewFormatter(FormatterConfig{})
	var batch []byte
	line := "CEF:0|mcpwatch|mcpwatch|0|MCP-1001|Tool call|1|msg=" + strings.Repeat("x", 1000)
	for i := 0; len(batch) < size; i++ {
		m, err := f.Append(nil, Message{MsgID: "MCP-1001", CEF: line})
		if err != nil {
			panic(err)
		}
		batch = AppendFrame(batch, m)
	}
	return batch
}

func plainClient(t *testing.T, addr string) *Client {
	t.Helper()
	c, err := NewClient(Config{Address: addr, Transport: TransportTCP, RetryFor: 20 * time.Second,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// A collector that resets the connection in the middle of a batch gets the whole batch again
// on the next connection, from its first frame: nothing is skipped, duplicates are possible.
func TestSendResendsBatchAfterReset(t *testing.T) {
	batch := testBatch(32 << 20) // larger than loopback socket buffers, so the reset hits mid-write
	col := newCollector(t, func(n int, c *net.TCPConn) []byte {
		defer c.Close()
		if n == 0 {
			buf := make([]byte, 100_000)
			k, _ := io.ReadFull(c, buf)
			_ = c.SetLinger(0) // close with RST
			return buf[:k]
		}
		b, _ := io.ReadAll(c)
		return b
	})
	cl := plainClient(t, col.ln.Addr().String())
	if err := cl.Send(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	_ = cl.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := col.received()
		if len(got) == 2 && len(got[1]) == len(batch) {
			if !bytes.Equal(got[0], batch[:len(got[0])]) || !bytes.Equal(got[1], batch) {
				t.Fatal("received bytes differ from the batch")
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("connections %d, second got %d of %d bytes", len(got), len(lastOr(got)), len(batch))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func lastOr(b [][]byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b[len(b)-1]
}

// A collector that closed an idle connection does not swallow the next batch: Send checks the
// connection first and reconnects. Without the check the write succeeds into a dead socket and
// the batch is lost while its offsets get committed.
func TestSendDetectsClosedConnection(t *testing.T) {
	first, second := testBatch(3000), testBatch(5000)
	col := newCollector(t, func(n int, c *net.TCPConn) []byte {
		defer c.Close()
		if n == 0 {
			buf := make([]byte, len(first))
			k, _ := io.ReadFull(c, buf)
			return buf[:k] // then close while the client is idle
		}
		b, _ := io.ReadAll(c)
		return b
	})
	cl := plainClient(t, col.ln.Addr().String())
	if err := cl.Send(t.Context(), first); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for got := col.received(); len(got) == 0 || got[0] == nil; got = col.received() {
		if time.Now().After(deadline) {
			t.Fatal("first connection not finished")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the FIN reaches the client
	if err := cl.Send(t.Context(), second); err != nil {
		t.Fatal(err)
	}
	_ = cl.Close()
	for {
		got := col.received()
		if len(got) == 2 && got[1] != nil {
			if !bytes.Equal(got[0], first) || !bytes.Equal(got[1], second) {
				t.Fatalf("got %d and %d bytes, want %d and %d", len(got[0]), len(got[1]), len(first), len(second))
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("second batch not received on a new connection (%d connections)", len(got))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// With no collector Send keeps trying until RetryFor, then says why; a cancelled context ends
// it at once.
func TestSendGivesUp(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	_ = ln.Close()
	c, err := NewClient(Config{Address: addr, Transport: TransportTCP, RetryFor: 300 * time.Millisecond,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Send(t.Context(), []byte("1 x"))
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Send without collector: %v", err)
	}
	c.cfg.RetryFor = 0
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = c.Send(ctx, []byte("1 x"))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "connect: ") {
		t.Fatalf("Send with cancelled context: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("Send took %s after its context ended", time.Since(start))
	}
}

func TestConfigValidate(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no address":         {},
		"no port":            {Address: "siem.example.com"},
		"unknown transport":  {Address: "a:1", Transport: "udp"},
		"cert without key":   {Address: "a:1", CertFile: "c.pem"},
		"tls options on tcp": {Address: "a:1", Transport: TransportTCP, CAFile: "ca.pem"},
	} {
		if err := cfg.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := NewClient(Config{Address: "a:6514", CAFile: "/nonexistent/ca.pem"}); err == nil || !strings.Contains(err.Error(), "CA bundle") {
		t.Errorf("missing CA file: %v", err)
	}
	if _, err := NewClient(Config{Address: "a:6514", CertFile: "/nonexistent/c.pem", KeyFile: "/nonexistent/k.pem"}); err == nil || !strings.Contains(err.Error(), "client certificate") {
		t.Errorf("missing client certificate: %v", err)
	}
	if err := (Config{Address: "siem.example.com:6514"}).Validate(); err != nil {
		t.Errorf("TLS with system roots: %v", err)
	}
}
