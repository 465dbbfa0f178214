package app

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/yamlpos"
)

// MaxConfigSize bounds a config file; a larger one is a mistake, not a config.
const MaxConfigSize = 1 << 20

// Config is mcpwatch's configuration: what every component shares (Kafka, ClickHouse,
// telemetry) and one section per component, keyed by [component.Factory.Section]. It is
// decoded from one YAML file (see deploy/mcpwatch.yaml), strictly: unknown keys, wrong types,
// duplicate keys and invalid values are errors with file:line:column.
type Config struct {
	Kafka      Kafka      `yaml:"kafka"`
	ClickHouse ClickHouse `yaml:"clickhouse"`
	Telemetry  Telemetry  `yaml:"telemetry"`
	// Run lists the components `mcpwatch run` starts. Empty: every registered component whose
	// factory enables it under its config (see [component.Factory.Enabled]).
	Run []component.Type `yaml:"run"`

	// Components holds each section's config, defaults for a section the file leaves out.
	Components map[string]component.Config `yaml:"-"`

	reg  *component.Registry
	file string    // the file decoded, for error positions
	ast  *ast.File // its syntax tree
}

// Kafka is the cluster and topic layout every component shares.
type Kafka struct {
	Brokers        []string `yaml:"brokers"`
	TopicPrefix    string   `yaml:"topic_prefix"`
	GroupPrefix    string   `yaml:"group_prefix"` // consumer groups "<group_prefix>-<stage>"; default "mcpwatch"
	Partitions     int32    `yaml:"partitions"`
	Replication    int16    `yaml:"replication"`
	RetentionHours int      `yaml:"retention_hours"`
}

// ClickHouse is the ClickHouse server and the three accounts mcpwatch uses: the writer (the
// sink), the administrator (migrations, retention) and the read-only user (queries,
// investigations). Passwords are secrets: from the environment or from files.
type ClickHouse struct {
	Addr             string           `yaml:"addr"`
	Database         string           `yaml:"database"`
	User             string           `yaml:"user"`
	Password         component.Secret `yaml:"password"`
	AdminUser        string           `yaml:"admin_user"`
	AdminPassword    component.Secret `yaml:"admin_password"`
	ReadOnlyUser     string           `yaml:"readonly_user"`
	ReadOnlyPassword component.Secret `yaml:"readonly_password"`
}

// Telemetry is logging and the operability endpoints.
type Telemetry struct {
	LogFormat   string `yaml:"log_format"`   // text or json
	LogLevel    string `yaml:"log_level"`    // debug, info, warn, error
	MetricsAddr string `yaml:"metrics_addr"` // /metrics, /healthz, /readyz; empty disables
}

// NewConfig returns the defaults, with a default config for every section of reg.
func NewConfig(reg *component.Registry) *Config {
	c := &Config{
		Kafka: Kafka{Brokers: []string{"127.0.0.1:19092"}, TopicPrefix: event.DefaultTopicPrefix,
			Partitions: 3, Replication: 1, RetentionHours: 168},
		ClickHouse: ClickHouse{Addr: "127.0.0.1:19000", Database: "mcpwatch",
			User: "mcpwatch", Password: component.SecretFromEnv("MCPWATCH_CLICKHOUSE_PASSWORD"),
			AdminUser: "default", AdminPassword: component.SecretFromEnv("MCPWATCH_CLICKHOUSE_ADMIN_PASSWORD"),
			ReadOnlyUser: "mcpwatch_ro", ReadOnlyPassword: component.SecretFromEnv("MCPWATCH_CLICKHOUSE_RO_PASSWORD")},
		Telemetry:  Telemetry{LogFormat: "text", LogLevel: "info", MetricsAddr: "127.0.0.1:9464"},
		Components: map[string]component.Config{},
		reg:        reg,
	}
	for _, t := range reg.Types() {
		f, _ := reg.Lookup(t)
		if _, ok := c.Components[f.Section()]; !ok {
			c.Components[f.Section()] = f.CreateDefaultConfig()
		}
	}
	return c
}

// Registry is the registry the config was made for.
func (c *Config) Registry() *component.Registry { return c.reg }

// Section returns the config of section s (a pointer: flags may be bound to its fields).
func (c *Config) Section(s string) component.Config { return c.Components[s] }

// File is the config file decoded, or "".
func (c *Config) File() string { return c.file }

// Topics are the topic names under the configured prefix.
func (c *Config) Topics() event.Topics { return event.TopicNames(c.Kafka.TopicPrefix) }

// KafkaConfig is the client configuration of the cluster.
func (c *Config) KafkaConfig(clientID string) kafkaio.Config {
	return kafkaio.Config{Brokers: c.Kafka.Brokers, ClientID: clientID}
}

// shared are the top-level keys that are not component sections.
var shared = []string{"kafka", "clickhouse", "telemetry", "run"}

// LoadFile decodes the YAML file at path over c: what the file sets replaces the value in c,
// what it leaves out keeps it. Every problem is reported, each with its position.
func (c *Config) LoadFile(path string) error {
	b, err := readLimited(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return c.Load(path, b)
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > MaxConfigSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, MaxConfigSize)
	}
	return os.ReadFile(path)
}

// Load decodes src (named name in errors) over c.
func (c *Config) Load(name string, src []byte) error {
	file, err := parser.ParseBytes(src, 0)
	if err != nil {
		return posError(name, err, nil)
	}
	c.file, c.ast = name, file
	if len(file.Docs) > 1 {
		return &Error{File: name, Line: yamlpos.Line(file.Docs[1].Start), Column: yamlpos.Col(file.Docs[1].Start), Msg: "more than one YAML document"}
	}
	if len(file.Docs) == 0 || file.Docs[0].Body == nil {
		return nil // an empty file: the defaults
	}
	top, err := mappingValues(file.Docs[0].Body)
	if err != nil {
		return posError(name, err, nil)
	}
	sections := c.reg.Sections()
	var errs []error
	seen := map[string]bool{}
	for _, mv := range top {
		key := mv.Key.String()
		at := mv.Key.GetToken()
		if seen[key] {
			errs = append(errs, &Error{File: name, Line: yamlpos.Line(at), Column: yamlpos.Col(at), Msg: fmt.Sprintf("%q is set twice", key)})
			continue
		}
		seen[key] = true
		var dst any
		switch {
		case key == "kafka":
			dst = &c.Kafka
		case key == "clickhouse":
			dst = &c.ClickHouse
		case key == "telemetry":
			dst = &c.Telemetry
		case key == "run":
			dst = &c.Run
		case slices.Contains(sections, key):
			dst = c.Components[key]
		default:
			errs = append(errs, &Error{File: name, Line: yamlpos.Line(at), Column: yamlpos.Col(at),
				Msg: fmt.Sprintf("unknown section %q (known: %s)", key, strings.Join(append(slices.Clone(shared), sections...), ", "))})
			continue
		}
		if mv.Value == nil || mv.Value.Type() == ast.NullType {
			continue
		}
		if err := yaml.NodeToValue(mv.Value, dst, yaml.Strict()); err != nil {
			errs = append(errs, posError(name, err, mv.Value))
		}
	}
	return errors.Join(errs...)
}

// mappingValues returns the key-value pairs of a mapping node.
func mappingValues(n ast.Node) ([]*ast.MappingValueNode, error) {
	switch m := n.(type) {
	case *ast.MappingNode:
		return m.Values, nil
	case *ast.MappingValueNode:
		return []*ast.MappingValueNode{m}, nil
	}
	return nil, &yaml.SyntaxError{Token: n.GetToken(), Message: "the config must be a mapping of sections"}
}

// Validate checks every shared setting and every section the host builds, returning all problems
// at once; a problem with a field the file set carries that field's file:line:column.
func (c *Config) Validate(sections []string) error {
	var errs []error
	add := func(section string, err error) {
		for _, e := range component.Flatten(err) {
			errs = append(errs, c.place(section, e))
		}
	}
	add("kafka", c.Kafka.validate())
	add("clickhouse", c.ClickHouse.validate())
	add("telemetry", c.Telemetry.validate())
	for _, t := range c.Run {
		if _, err := c.reg.Lookup(t); err != nil {
			errs = append(errs, c.place("run", err))
		}
	}
	for _, s := range sections {
		if cfg, ok := c.Components[s]; ok {
			add(s, cfg.Validate())
		}
	}
	return errors.Join(errs...)
}

// place gives err the position of its field in the file, when the file set that field.
func (c *Config) place(section string, err error) error {
	path := section
	var fe *component.FieldError
	if errors.As(err, &fe) {
		path = section + "." + fe.Path
		if strings.HasPrefix(fe.Path, "[") {
			path = section + fe.Path
		}
		err = fe.Err
	}
	e := &Error{Path: path, Msg: err.Error(), err: err}
	if c.ast != nil {
		if p, perr := yaml.PathString("$." + path); perr == nil {
			if n, ferr := p.FilterFile(c.ast); ferr == nil && n != nil {
				// The value came from the file: point at it. Otherwise it is a default, a flag or
				// an environment variable, and the path alone says which setting is wrong.
				e.File, e.Line, e.Column = c.file, yamlpos.Line(n.GetToken()), yamlpos.Col(n.GetToken())
			}
		}
	}
	return e
}

func (k Kafka) validate() error {
	var errs []error
	if len(k.Brokers) == 0 {
		errs = append(errs, component.Fieldf("brokers", "no brokers (set kafka.brokers, --kafka or MCPWATCH_KAFKA_BROKERS)"))
	}
	for i, b := range k.Brokers {
		if strings.TrimSpace(b) == "" {
			errs = append(errs, component.Fieldf(fmt.Sprintf("brokers[%d]", i), "empty broker address"))
		}
	}
	if k.Partitions < 1 {
		errs = append(errs, component.Fieldf("partitions", "must be at least 1, got %d", k.Partitions))
	}
	if k.Replication < 1 {
		errs = append(errs, component.Fieldf("replication", "must be at least 1, got %d", k.Replication))
	}
	if k.RetentionHours < 1 {
		errs = append(errs, component.Fieldf("retention_hours", "must be at least 1, got %d", k.RetentionHours))
	}
	if strings.ContainsAny(k.TopicPrefix, " /\\") {
		errs = append(errs, component.Fieldf("topic_prefix", "%q: a topic name holds no spaces or slashes", k.TopicPrefix))
	}
	return errors.Join(errs...)
}

func (c ClickHouse) validate() error {
	var errs []error
	if c.Addr == "" {
		errs = append(errs, component.Fieldf("addr", "required (host:port of the native protocol)"))
	}
	if c.Database == "" {
		errs = append(errs, component.Fieldf("database", "required"))
	}
	for name, s := range map[string]component.Secret{"password": c.Password, "admin_password": c.AdminPassword, "readonly_password": c.ReadOnlyPassword} {
		errs = append(errs, component.Field(name, s.Validate()))
	}
	return errors.Join(errs...)
}

func (t Telemetry) validate() error {
	var errs []error
	if t.LogFormat != "text" && t.LogFormat != "json" {
		errs = append(errs, component.Fieldf("log_format", "%q: want text or json", t.LogFormat))
	}
	switch strings.ToLower(t.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, component.Fieldf("log_level", "%q: want debug, info, warn or error", t.LogLevel))
	}
	return errors.Join(errs...)
}

// Error is a problem with the configuration, where it is.
type Error struct {
	File         string // "" when the value did not come from a file
	Line, Column int    // 0 when unknown
	Path         string // section.field, when known
	Msg          string
	err          error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d:%d", e.Line, e.Column)
		}
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

func (e *Error) Unwrap() error { return e.err }

// posError turns a YAML library error into an [*Error] at the position of its token
// ([yamlpos.Locate]).
func posError(file string, err error, within ast.Node) error {
	line, col, msg := yamlpos.Locate(err, within)
	return &Error{File: file, Line: line, Column: col, Msg: msg, err: err}
}
