package detectors

import (
	"context"

	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

// Type is the detect stage's component type.
const Type component.Type = "detect"

// NewFactory returns the detect stage's factory.
func NewFactory() component.Factory {
	return component.NewFactory(Type, func() *Config { c := DefaultConfig(); return &c },
		func(_ context.Context, set component.Settings, cfg *Config) (component.Component, error) {
			h, runs, err := build(set.Topics, *cfg, set.Registerer, set.Logger)
			if err != nil {
				return nil, err
			}
			assigned, revoked := Hooks(h, set.Topics, set.KafkaClient("-profiles"))
			st, err := kafkaio.NewStage(set.KafkaClient(""), kafkaio.StageConfig{Name: string(Type), Group: set.Group(string(Type)),
				Topics: []string{set.Topics.Events}, DeadLetterTopic: set.Topics.DeadLetter,
				OnAssigned: assigned, OnRevoked: revoked}, h, set.Registerer, set.Logger)
			if err != nil {
				return nil, err
			}
			p := &component.Parts{}
			p.Go(st.Run)
			for _, r := range runs {
				p.Go(r)
			}
			p.OnClose(st.Close)
			return p, nil
		})
}
