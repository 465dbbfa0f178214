// Package componenttest builds [component.Settings] for tests of components.
package componenttest

import (
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/obs"
)

// Settings returns settings for a component of type typ on brokers and topics, with a fresh
// metrics registry, health, a discarding logger and consumer groups unique to the test.
func Settings(t testing.TB, typ component.Type, brokers []string, topics event.Topics) component.Settings {
	return component.Settings{
		Type:        typ,
		Logger:      slog.New(slog.DiscardHandler),
		Registerer:  prometheus.NewRegistry(),
		Health:      obs.NewHealth(),
		Topics:      topics,
		Kafka:       kafkaio.Config{Brokers: brokers},
		GroupPrefix: "test-" + topics.Raw + "-" + time.Now().Format("150405.000000"),
	}
}
