package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"go.yaml.in/yaml/v3"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcp"
)

// maxTokensFile bounds a tokens file; it lists development tokens, not a user database.
const maxTokensFile = 1 << 20

// tokenEntry is one entry of a tokens file.
type tokenEntry struct {
	SHA256   string   `yaml:"sha256"`
	Token    string   `yaml:"token"`
	Subject  string   `yaml:"sub"`
	ClientID string   `yaml:"client_id"`
	Roles    []string `yaml:"roles"`
}

// LoadTokens reads a tokens file: a YAML list of static bearer tokens (better their SHA-256 than
// the token) and the principals they stand for. Unknown keys are errors; the tokens themselves
// are checked by [mcp.NewStaticTokens].
func LoadTokens(path string) ([]mcp.StaticToken, error) {
	if path == "" {
		return nil, errors.New("tokens file: no path (default deny: no tokens, no access)")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	if len(b) > maxTokensFile {
		return nil, fmt.Errorf("tokens file %s: larger than %d bytes", path, maxTokensFile)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var entries []tokenEntry
	if err := dec.Decode(&entries); err != nil {
		return nil, fmt.Errorf("tokens file %s: %w", path, err)
	}
	out := make([]mcp.StaticToken, 0, len(entries))
	for _, e := range entries {
		out = append(out, mcp.StaticToken{SHA256: e.SHA256, Token: e.Token,
			Principal: event.Principal{Subject: e.Subject, ClientID: e.ClientID, Roles: e.Roles}})
	}
	return out, nil
}
