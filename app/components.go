package app

import (
	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/detectors"
	"github.com/mcpwatch/mcpwatch/forward"
	"github.com/mcpwatch/mcpwatch/ingest/gateway"
	"github.com/mcpwatch/mcpwatch/processors"
	"github.com/mcpwatch/mcpwatch/response"
	"github.com/mcpwatch/mcpwatch/response/ledger"
	"github.com/mcpwatch/mcpwatch/storage/sink"
)

// Components is the registry of every component mcpwatch ships, in data-flow order: this is
// the one place a new component is added.
func Components() *component.Registry {
	r, err := component.NewRegistry(
		processors.NewFactory(),
		sink.NewFactory(),
		detectors.NewFactory(),
		response.NewRespondFactory(),
		response.NewNotifyFactory(),
		ledger.NewFactory(),
		forward.NewFactory(),
		gateway.NewFactory(),
	)
	if err != nil {
		panic(err) // two factories of one type: a programming error caught by the tests
	}
	return r
}
