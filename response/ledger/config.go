package ledger

import (
	"context"
	"crypto/ed25519"
	"errors"

	"github.com/mcpwatch/mcpwatch/component"
)

// Type is the ledger's component type and config section.
const Type component.Type = "ledger"

// KeyEnv is the default source of the signing key: the PEM text in this environment variable.
const KeyEnv = "MCPWATCH_LEDGER_KEY"

// Config is the ledger section of the config file.
type Config struct {
	// Key is the Ed25519 signing key, PKCS#8 PEM (`mcpwatch response keygen`), from a file or an
	// environment variable; default {env: MCPWATCH_LEDGER_KEY}. Never in the config file.
	Key component.Secret `yaml:"key"`
	// PreviousPublicKeys are files of public keys the ledger signed with before a key rotation:
	// it verifies the tail it resumes from, which the old key may have signed.
	PreviousPublicKeys []string `yaml:"previous_public_keys"`
	// DedupWindow is how many recently chained action ids a repeated id is caught among.
	DedupWindow int `yaml:"dedup_window"`
	// MaxBatch bounds the entries of one transaction.
	MaxBatch int `yaml:"max_batch"`
	// TransactionalID fences other instances; default "<audit topic>.ledger". Every ledger of a
	// deployment must use the same.
	TransactionalID string `yaml:"transactional_id"`
}

// DefaultConfig returns the defaults: key from $MCPWATCH_LEDGER_KEY, 10,000 ids in the dedup
// window, batches of at most 1,000 entries.
func DefaultConfig() *Config {
	return &Config{Key: component.SecretFromEnv(KeyEnv), DedupWindow: 10_000, MaxBatch: 1_000}
}

// Validate reports settings the ledger cannot work with.
func (c *Config) Validate() error {
	var errs []error
	if err := c.Key.Validate(); err != nil {
		errs = append(errs, component.Field("key", err))
	}
	if c.DedupWindow < 1 || c.DedupWindow > 10_000_000 {
		errs = append(errs, component.Fieldf("dedup_window", "must be in [1, 10000000], got %d", c.DedupWindow))
	}
	if c.MaxBatch < 1 || c.MaxBatch > 100_000 {
		errs = append(errs, component.Fieldf("max_batch", "must be in [1, 100000], got %d", c.MaxBatch))
	}
	return errors.Join(errs...)
}

// enabled: the ledger runs unasked when a key is configured: a key file, or a non-empty
// variable. A key file named but missing is not "disabled": Create then fails, loudly.
func (c *Config) enabled() bool {
	if c.Key.File != "" {
		return true
	}
	v, err := c.Key.Resolve()
	return err == nil && v != ""
}

func (c *Config) key() (*Key, error) {
	pemText, err := c.Key.Resolve()
	if err != nil {
		return nil, component.Field("key", err)
	}
	if pemText == "" {
		return nil, component.Fieldf("key", "no signing key: set %s or ledger.key: {file: PATH} (create one with `mcpwatch response keygen --out PATH`)", c.Key)
	}
	k, err := ParsePrivatePEM([]byte(pemText))
	if err != nil {
		return nil, component.Field("key", err)
	}
	return k, nil
}

// NewFactory returns the ledger's factory. `mcpwatch run` starts it when a key is configured.
func NewFactory() component.Factory {
	return component.NewFactory(Type, DefaultConfig, create, component.WithEnabled((*Config).enabled))
}

func create(_ context.Context, set component.Settings, cfg *Config) (component.Component, error) {
	key, err := cfg.key()
	if err != nil {
		return nil, err
	}
	var trusted map[string]ed25519.PublicKey
	if len(cfg.PreviousPublicKeys) > 0 {
		if trusted, err = ReadPublicKeys(cfg.PreviousPublicKeys...); err != nil {
			return nil, component.Field("previous_public_keys", err)
		}
	}
	id := cfg.TransactionalID
	if id == "" {
		id = set.Topics.Audit + ".ledger"
	}
	l, err := New(Options{Kafka: set.KafkaClient(""), Topics: set.Topics, TransactionalID: id, Key: key,
		Trusted: trusted, DedupWindow: cfg.DedupWindow, MaxBatch: cfg.MaxBatch,
		Registerer: set.Registerer, Logger: set.Logger})
	if err != nil {
		return nil, err
	}
	set.Logger.Info("ledger key", "key_id", key.ID, "transactional_id", id)
	p := &component.Parts{}
	p.Go(l.Run)
	return p, nil
}
