package component

import (
	"context"
	"errors"

	"golang.org/x/sync/errgroup"
)

// Parts is a [Component] made of loops that run side by side (consumer-group stages, reload
// loops, followers) and of things to release when it ends. Most components are one.
type Parts struct {
	runs   []func(context.Context) error
	closes []func() error
}

// Go adds a loop; Run runs it until ctx ends.
func (p *Parts) Go(run func(context.Context) error) { p.runs = append(p.runs, run) }

// OnClose adds fn to what Close releases; releases run in reverse order of addition.
func (p *Parts) OnClose(fn func() error) { p.closes = append(p.closes, fn) }

// Run runs every loop until ctx ends or one fails, which stops the others.
func (p *Parts) Run(ctx context.Context) error {
	eg, gctx := errgroup.WithContext(ctx)
	for _, r := range p.runs {
		eg.Go(func() error { return r(gctx) })
	}
	return eg.Wait()
}

// Close releases everything added with OnClose, once.
func (p *Parts) Close() error {
	var errs []error
	for i := len(p.closes) - 1; i >= 0; i-- {
		errs = append(errs, p.closes[i]())
	}
	p.closes = nil
	return errors.Join(errs...)
}
