package component

import (
	"fmt"
	"os"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
)

// Secret is a credential a config names but never holds: it comes from an environment variable
// or a file (a mounted Kubernetes or systemd secret). In YAML it is `{env: NAME}` or
// `{file: PATH}`; a literal value is refused, so a config file can be committed, shown and
// mounted without leaking anything. A Secret prints as its source, never its value.
type Secret struct {
	Env  string `yaml:"env,omitempty"`
	File string `yaml:"file,omitempty"`
	// value is a secret a program holds already (a test, a benchmark harness): no config file
	// can set it.
	value *string
}

// SecretFromEnv is a Secret read from the environment variable name.
func SecretFromEnv(name string) Secret { return Secret{Env: name} }

// SecretValue is a Secret a program already holds.
func SecretValue(v string) Secret { return Secret{value: &v} }

// IsSet reports whether the secret names a source.
func (s Secret) IsSet() bool { return s.Env != "" || s.File != "" || s.value != nil }

// String names the source, never the value.
func (s Secret) String() string {
	switch {
	case s.value != nil:
		return "value"
	case s.File != "":
		return "file:" + s.File
	case s.Env != "":
		return "env:" + s.Env
	}
	return "unset"
}

// Validate reports a secret that names both sources.
func (s Secret) Validate() error {
	if (s.Env != "") && (s.File != "") {
		return fmt.Errorf("a secret comes from env or from file, not both")
	}
	return nil
}

// Resolve returns the value: the environment variable's ("" when unset), or the file's content
// without its trailing newline. An unset Secret resolves to "".
func (s Secret) Resolve() (string, error) {
	switch {
	case s.value != nil:
		return *s.value, nil
	case s.File != "":
		b, err := os.ReadFile(s.File)
		if err != nil {
			return "", fmt.Errorf("secret file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	case s.Env != "":
		return os.Getenv(s.Env), nil
	}
	return "", nil
}

// UnmarshalYAML accepts {env: NAME} or {file: PATH} and refuses anything else, a literal
// credential above all.
func (s *Secret) UnmarshalYAML(n ast.Node) error {
	if n.Type() != ast.MappingType {
		return &yaml.SyntaxError{Token: n.GetToken(),
			Message: "a secret is never written in the config file: give {env: VARIABLE} or {file: PATH}"}
	}
	type plain Secret
	var p plain
	if err := yaml.NodeToValue(n, &p, yaml.Strict()); err != nil {
		return err
	}
	if p.Env == "" && p.File == "" {
		return &yaml.SyntaxError{Token: n.GetToken(), Message: "a secret needs env or file"}
	}
	if err := Secret(p).Validate(); err != nil {
		return &yaml.SyntaxError{Token: n.GetToken(), Message: err.Error()}
	}
	*s = Secret(p)
	return nil
}
