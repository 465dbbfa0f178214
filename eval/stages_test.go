package eval

import (
	"log/slog"

	"github.com/mcpwatch/mcpwatch/detectors"
	"github.com/mcpwatch/mcpwatch/enrich"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/processors"
)

// realStages wires the real process and detect stages, as cmd/mcpwatch does for `mcpwatch eval`.
func realStages() Stages {
	return Stages{
		Process: func(t event.Topics, en *enrich.Enricher) kafkaio.Handler {
			return processors.Handler(t, nil, processors.WithEnricher(en))
		},
		Detect: func(t event.Topics) (kafkaio.Handler, error) {
			return detectors.Build(t, detectors.DefaultConfig(), nil, discard)
		},
	}
}

var discard = slog.New(slog.DiscardHandler)
