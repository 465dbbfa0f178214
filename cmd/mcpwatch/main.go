// Command mcpwatch is the one binary of the pipeline: each stage is a subcommand, and `run` and
// `demo` start them all in one process.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := newRoot().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "mcpwatch:", err)
		os.Exit(1)
	}
}
