package live

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/app"
	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/eval/traffic"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
	"github.com/mcpwatch/mcpwatch/storage"
)

// TestLive runs a very small live evaluation through real Kafka, ClickHouse and the gateway:
// every call must reach the gateway and be audited (refusals included), the rug pull must
// surface as the gateway's tool-change event, and the scraper must be found.
func TestLive(t *testing.T) {
	brokers := testenv.Kafka(t)
	che := testenv.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cfg := app.NewConfig(app.Components())
	cfg.Kafka.Brokers, cfg.Kafka.Partitions = brokers, 1
	cfg.ClickHouse.Addr, cfg.ClickHouse.Database = che.Addr, che.Database
	cfg.ClickHouse.User, cfg.ClickHouse.Password = che.User, component.SecretValue(che.Password)
	migrate := func(ctx context.Context, _ io.Writer) error {
		conn, err := storage.Open(ctx, storage.Options{Addr: che.Addr, User: che.AdminUser, Password: che.AdminPassword})
		if err != nil {
			return err
		}
		defer conn.Close()
		if err := storage.CreateDatabase(ctx, conn, che.Database); err != nil {
			return err
		}
		_, err = storage.Migrate(ctx, conn, che.Database)
		return err
	}
	var out bytes.Buffer
	res, err := Run(ctx, Options{
		Config: cfg, TopicPrefix: testenv.TopicPrefix(t), Migrate: migrate,
		ReadOnly: storage.Options{Addr: che.Addr, Database: che.Database, User: che.ROUser, Password: che.ROPassword},
		Seed:     1, Principals: 40, History: 24 * time.Hour, Test: time.Minute, PerKind: 1,
		Kinds: []traffic.Kind{traffic.Scraping, traffic.Probing, traffic.RugPull}, Out: &out, Drain: time.Minute,
	})
	if err != nil {
		t.Fatalf("live eval: %v\n%s", err, out.String())
	}
	t.Log(out.String())
	if res.Calls == 0 || res.Audited != res.Calls {
		t.Errorf("%d calls issued, %d request events audited: every call must reach the gateway", res.Calls, res.Audited)
	}
	if res.Refused == 0 {
		t.Error("no call was refused: the prober's calls outside its role must be denied by the policy")
	}
	if res.ToolChanges == 0 {
		t.Error("the rug pull's changed definition was not reported by the gateway's tool pins")
	}
	if k := res.Report.Seeds[0].Detector.Kinds[traffic.Scraping]; k.Instances != 1 || k.Detected != 1 {
		t.Errorf("scraping: %d of %d instances detected", k.Detected, k.Instances)
	}
}
