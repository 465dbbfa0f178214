package component_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/mcpwatch/mcpwatch/component"
)

type cfgA struct {
	N int `yaml:"n"`
}

func (c *cfgA) Validate() error {
	if c.N < 0 {
		return component.Fieldf("n", "must not be negative, got %d", c.N)
	}
	return nil
}

type cfgB struct{}

func (*cfgB) Validate() error { return nil }

func newA(typ component.Type, opts ...component.FactoryOption) component.Factory {
	return component.NewFactory(typ, func() *cfgA { return &cfgA{N: 1} },
		func(context.Context, component.Settings, *cfgA) (component.Component, error) {
			return &component.Parts{}, nil
		}, opts...)
}

// The registry is the one list of what a host can build: a type registered twice would make
// the config section ambiguous, and an unknown type must name the known ones.
func TestRegistry(t *testing.T) {
	if _, err := component.NewRegistry(newA("a"), newA("a")); err == nil {
		t.Fatal("a type registered twice was accepted")
	}
	r, err := component.NewRegistry(newA("a"), newA("b", component.WithSection("a")), newA("c"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.Types(), []component.Type{"a", "b", "c"}) || !slices.Equal(r.Sections(), []string{"a", "c"}) {
		t.Fatalf("types %v sections %v", r.Types(), r.Sections())
	}
	if _, err := r.Lookup("z"); !errors.Is(err, component.ErrUnknownType) || !strings.Contains(err.Error(), "[a b c]") {
		t.Fatalf("unknown type: %v", err)
	}
}

// A factory creates only from its own config type and says when it runs unasked.
func TestFactory(t *testing.T) {
	f := newA("a", component.WithEnabled(func(c *cfgA) bool { return c.N > 0 }))
	cfg := f.CreateDefaultConfig().(*cfgA)
	if cfg.N != 1 || !f.Enabled(cfg) || f.Enabled(&cfgA{}) || f.Enabled(&cfgB{}) {
		t.Fatal("defaults or Enabled wrong")
	}
	if _, err := f.Create(context.Background(), component.Settings{}, &cfgB{}); err == nil || !strings.Contains(err.Error(), "*component_test.cfgB") {
		t.Fatalf("foreign config: %v", err)
	}
	if c, err := f.Create(context.Background(), component.Settings{}, cfg); err != nil || c == nil {
		t.Fatalf("create: %v", err)
	}
	if !newA("x").Enabled(&cfgA{}) {
		t.Fatal("a factory without WithEnabled must always be enabled")
	}
}

// Field paths compose the way YAML nests, so the loader can find the line: Under("rate",
// "threshold") is rate.threshold, Under("upstreams[2]", "url") is upstreams[2].url.
func TestFieldPaths(t *testing.T) {
	err := component.Under("gateway", errors.Join(
		component.Under("upstreams[2]", component.Fieldf("url", "bad")),
		component.Under("upstreams", component.Fieldf("[0].name", "twice")),
		errors.New("no field"),
	))
	var got []string
	for _, e := range component.Flatten(err) {
		var fe *component.FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("%v is not a field error", e)
		}
		got = append(got, fe.Path)
	}
	if want := []string{"gateway.upstreams[2].url", "gateway.upstreams[0].name", "gateway"}; !slices.Equal(got, want) {
		t.Fatalf("paths %v, want %v", got, want)
	}
	if component.Under("x", nil) != nil || component.Field("x", nil) != nil {
		t.Fatal("nil must stay nil")
	}
}

// A secret comes from the environment or a file and never from the config file itself, and it
// never prints. If this failed, a committed or displayed config could leak a credential.
func TestSecret(t *testing.T) {
	t.Setenv("TEST_SECRET", "from-env")
	file := filepath.Join(t.TempDir(), "s")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		s    component.Secret
		want string
	}{{component.SecretFromEnv("TEST_SECRET"), "from-env"}, {component.Secret{File: file}, "from-file"},
		{component.SecretValue("held"), "held"}, {component.Secret{}, ""}, {component.SecretFromEnv("TEST_UNSET_SECRET"), ""}} {
		got, err := c.s.Resolve()
		if err != nil || got != c.want {
			t.Errorf("%v: %q %v, want %q", c.s, got, err, c.want)
		}
		if strings.Contains(c.s.String(), "from-") || strings.Contains(c.s.String(), "held") {
			t.Errorf("String() %q shows the value", c.s.String())
		}
	}
	if _, err := (component.Secret{File: filepath.Join(t.TempDir(), "none")}).Resolve(); err == nil {
		t.Error("a missing secret file resolved")
	}
	if (component.Secret{Env: "A", File: "b"}).Validate() == nil {
		t.Error("env and file together accepted")
	}
	var dst struct {
		S component.Secret `yaml:"s"`
	}
	for src, want := range map[string]string{
		"s: hunter2\n":                  "never written in the config file",
		"s: {}\n":                       "needs env or file",
		"s: {env: A, file: b}\n":        "not both",
		"s: {env: A, value: hunter2}\n": "unknown field",
	} {
		// The message, without the source excerpt the library appends to Error(): the config
		// loader reports only the message (and the position).
		err := yaml.UnmarshalWithOptions([]byte(src), &dst, yaml.Strict())
		var ye yaml.Error
		if !errors.As(err, &ye) || !strings.Contains(ye.GetMessage(), want) || strings.Contains(ye.GetMessage(), "hunter2") {
			t.Errorf("%q: %v, want %q without the value", src, err, want)
		}
	}
	if err := yaml.UnmarshalWithOptions([]byte("s: {file: /run/secrets/x}\n"), &dst, yaml.Strict()); err != nil || dst.S.File != "/run/secrets/x" {
		t.Errorf("file secret: %v %+v", err, dst.S)
	}
}

// Parts run side by side: one failing stops the others; Close releases in reverse order, once.
func TestParts(t *testing.T) {
	var order []string
	p := &component.Parts{}
	stopped := make(chan struct{})
	p.Go(func(ctx context.Context) error { <-ctx.Done(); close(stopped); return nil })
	p.Go(func(context.Context) error { return errors.New("boom") })
	p.OnClose(func() error { order = append(order, "first"); return nil })
	p.OnClose(func() error { order = append(order, "second"); return errors.New("close failed") })
	if err := p.Run(context.Background()); err == nil || err.Error() != "boom" {
		t.Fatalf("run: %v", err)
	}
	<-stopped
	if err := p.Close(); err == nil || !slices.Equal(order, []string{"second", "first"}) {
		t.Fatalf("close: %v, order %v", err, order)
	}
	if err := p.Close(); err != nil || len(order) != 2 {
		t.Fatalf("second close: %v, order %v", err, order)
	}
}
