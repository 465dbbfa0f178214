package detectors

import (
	"context"

	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

// Type is the detect stage's component type.
const Type component.Type = "detect"

// FactoryConfig configures the detect stage.
type FactoryConfig struct {
	Rate RateConfig `yaml:"rate"`
}

// Validate reports a config the stage cannot work with.
func (c *FactoryConfig) Validate() error { return component.Under("rate", c.Rate.Validate()) }

// NewFactory returns the detect stage's factory.
func NewFactory() component.Factory {
	return component.NewFactory(Type, func() *FactoryConfig { return &FactoryConfig{Rate: DefaultRateConfig()} },
		func(_ context.Context, set component.Settings, cfg *FactoryConfig) (component.Component, error) {
			h, err := Handler(set.Topics, cfg.Rate, set.Registerer, set.Logger)
			if err != nil {
				return nil, err
			}
			st, err := kafkaio.NewStage(set.KafkaClient(""), kafkaio.StageConfig{Name: string(Type), Group: set.Group(string(Type)),
				Topics: []string{set.Topics.Events}, DeadLetterTopic: set.Topics.DeadLetter}, h, set.Registerer, set.Logger)
			if err != nil {
				return nil, err
			}
			p := &component.Parts{}
			p.Go(st.Run)
			p.OnClose(st.Close)
			return p, nil
		})
}
