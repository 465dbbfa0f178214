package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mcpwatch/mcpwatch/response/ledger"
)

func init() {
	responseSubcommands = append(responseSubcommands, responseVerifyCmd, responseExportCmd, responseKeygenCmd)
}

// auditSource is where verify and export read the audit trail from.
type auditSource struct {
	file              string
	kafka, clickhouse bool
}

func (s *auditSource) flags(cmd *cobra.Command, withFile bool) {
	if withFile {
		cmd.Flags().StringVar(&s.file, "file", "", "a JSONL export (`mcpwatch response export`): verify offline")
	}
	cmd.Flags().BoolVar(&s.kafka, "from-kafka", false, "read the audit topic (committed entries)")
	cmd.Flags().BoolVar(&s.clickhouse, "from-clickhouse", false, "read the response_audit table as the read-only user")
}

func (s *auditSource) source(g *globals) (ledger.Source, error) {
	n := 0
	for _, on := range []bool{s.file != "", s.kafka, s.clickhouse} {
		if on {
			n++
		}
	}
	switch {
	case n != 1:
		return nil, errors.New("give exactly one of --file, --from-kafka, --from-clickhouse")
	case s.file != "":
		return ledger.FileSource(s.file), nil
	case s.kafka:
		return ledger.KafkaSource(g.kafkaConfig("mcpwatch-audit-reader"), g.topics().Audit), nil
	}
	return ledger.ClickHouseSource(g.clickhouseRO()), nil
}

func responseVerifyCmd(g *globals) *cobra.Command {
	var src auditSource
	var pubkeys []string
	cmd := &cobra.Command{
		Use:   "verify (--file audit.jsonl | --from-kafka | --from-clickhouse) --pubkey ledger.pub",
		Short: "Verify the signed, hash-chained audit trail; exit status 1 at any broken link",
		Example: `  mcpwatch response verify --file audit.jsonl --pubkey ledger.pub
  mcpwatch response verify --from-kafka --pubkey ledger-2026.pub --pubkey ledger-2025.pub`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(pubkeys) == 0 {
				return errors.New("give the ledger's public key with --pubkey (repeat it for keys used before a rotation)")
			}
			keys, err := ledger.ReadPublicKeys(pubkeys...)
			if err != nil {
				return err
			}
			s, err := src.source(g)
			if err != nil {
				return err
			}
			rep, err := ledger.Verify(cmd.Context(), s, keys)
			ledger.WriteReport(cmd.OutOrStdout(), rep)
			if err != nil {
				return err
			}
			return ledger.CheckReport(rep)
		},
	}
	src.flags(cmd, true)
	cmd.Flags().StringArrayVar(&pubkeys, "pubkey", nil, "a public key file of the ledger (PEM or 64 hex digits); repeatable")
	return cmd
}

func responseExportCmd(g *globals) *cobra.Command {
	var src auditSource
	var out string
	cmd := &cobra.Command{
		Use:   "export --out audit.jsonl (--from-kafka | --from-clickhouse)",
		Short: "Write the audit trail to a new JSONL file, one entry a line, for offline verification",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out is required")
			}
			s, err := src.source(g)
			if err != nil {
				return err
			}
			n, err := ledger.ExportFile(cmd.Context(), s, out)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d entries\n", out, n)
			return nil
		},
	}
	src.flags(cmd, false)
	cmd.Flags().StringVar(&out, "out", "", "file to create (never overwritten)")
	return cmd
}

func responseKeygenCmd(*globals) *cobra.Command {
	var out, pub string
	cmd := &cobra.Command{
		Use:   "keygen --out ledger.pem [--pub ledger.pub]",
		Short: "Create the ledger's Ed25519 signing key (PKCS#8 PEM, mode 0600) and print its public key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out is required")
			}
			k, err := ledger.WriteNewKey(out)
			if err != nil {
				return err
			}
			pem, err := ledger.MarshalPublicPEM(k.Public)
			if err != nil {
				return err
			}
			if pub != "" {
				if err := os.WriteFile(pub, pem, 0o644); err != nil {
					return fmt.Errorf("write public key: %w", err)
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "key id %s\n%s", k.ID, pem)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "private key file to create (never overwritten)")
	cmd.Flags().StringVar(&pub, "pub", "", "also write the public key to this file")
	return cmd
}

func ledgerFlags(g *globals, fs *pflag.FlagSet) {
	c := g.cfg.Section(string(ledger.Type)).(*ledger.Config)
	fs.StringVar(&c.Key.File, "ledger-key-file", c.Key.File, "the ledger's signing key, PKCS#8 PEM (default: the PEM in $"+ledger.KeyEnv+")")
	g.b.env(fs, "ledger-key-file", "MCPWATCH_LEDGER_KEY_FILE")
}
