package mcpwatchds

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"

	"github.com/mcpwatch/mcpwatch/internal/approval"
	"github.com/mcpwatch/mcpwatch/privacy"
	"github.com/mcpwatch/mcpwatch/storage"
)

// Settings is the datasource's configuration (jsonData, and the password from secureJsonData).
type Settings struct {
	Addr     string `json:"addr"`     // ClickHouse native address, host:port
	Database string `json:"database"` // the mcpwatch database
	User     string `json:"user"`     // the read-only user
	Password string `json:"-"`
	// MaxExecutionSeconds is sent as max_execution_time with every query; default 30.
	MaxExecutionSeconds int `json:"maxExecutionSeconds"`
	// MaxRows caps the rows of every result; default 10000.
	MaxRows int `json:"maxRows"`
	// KafkaBrokers and TopicPrefix reach the control topic for operator actions; empty brokers
	// turn operator actions off.
	KafkaBrokers string `json:"kafkaBrokers"`
	TopicPrefix  string `json:"topicPrefix"`
	// OperatorRole is the least Grafana role that may lift controls: Editor (default) or Admin.
	OperatorRole string `json:"operatorRole"`
	// ApprovalsURL is the base URL of the approvals API (`mcpwatch response approvals-serve`):
	// GET /approvals and /approvals/{id} read it and POST /approvals/{id}/votes relays votes to
	// it; empty turns all three off. The plugin never signs: each vote is Ed25519-signed in the
	// approver's browser with the approver's own key, which never reaches the plugin.
	ApprovalsURL string `json:"approvalsUrl"`
	// ApproverLogins maps a Grafana login to its approver id in the approvals keyring, for logins
	// that differ from their approver id; a login not in the map votes as the approver id equal
	// to its login, unless another login is mapped to that id. Each approver id may be mapped
	// from at most one login.
	ApproverLogins map[string]string `json:"approverLogins"`
	// ApprovalsCACert, ApprovalsClientCert and ApprovalsClientKey (secureJsonData
	// approvalsCaCert, approvalsClientCert, approvalsClientKey; PEM text) are the TLS settings
	// towards an https approvals API: the CA that verifies it (empty: the system's roots) and the
	// plugin's client certificate for an API that requires one (approvals-serve --client-ca).
	// The connection is TLS 1.3.
	ApprovalsCACert     string `json:"-"`
	ApprovalsClientCert string `json:"-"`
	ApprovalsClientKey  string `json:"-"`
	// DPUser is the ClickHouse user the differential-privacy path writes the ε ledger
	// (privacy_budget) as; its password is secureJsonData.dpPassword. Empty turns dp_aggregate
	// off. It is never the read-only user: that one cannot INSERT. On servers with SQL access
	// control it should hold only the grants of dp_user.sql; on ClickHouse 18.16 it can only be
	// a writer user, which CheckHealth warns about.
	DPUser     string `json:"dpUser"`
	DPPassword string `json:"-"`
	// DPBudget is the ε each Grafana login may spend per DPPeriodDays; default
	// privacy.DefaultBudget (5).
	DPBudget float64 `json:"dpBudget"`
	// DPPeriodDays is the rolling accounting window of the budget in days; default 30.
	DPPeriodDays int `json:"dpPeriodDays"`
}

// LoadSettings reads s from Grafana's instance settings and validates it.
func LoadSettings(is backend.DataSourceInstanceSettings) (Settings, error) {
	var s Settings
	if len(is.JSONData) > 0 {
		if err := json.Unmarshal(is.JSONData, &s); err != nil {
			return s, fmt.Errorf("datasource settings: %w", err)
		}
	}
	s.Password = is.DecryptedSecureJSONData["password"]
	s.DPPassword = is.DecryptedSecureJSONData["dpPassword"]
	s.ApprovalsCACert = is.DecryptedSecureJSONData["approvalsCaCert"]
	s.ApprovalsClientCert = is.DecryptedSecureJSONData["approvalsClientCert"]
	s.ApprovalsClientKey = is.DecryptedSecureJSONData["approvalsClientKey"]
	if s.DPBudget == 0 {
		s.DPBudget = privacy.DefaultBudget
	}
	if s.DPPeriodDays == 0 {
		s.DPPeriodDays = int(privacy.DefaultPeriod / (24 * time.Hour))
	}
	if s.MaxExecutionSeconds <= 0 {
		s.MaxExecutionSeconds = 30
	}
	if s.MaxRows <= 0 {
		s.MaxRows = 10000
	}
	if s.OperatorRole == "" {
		s.OperatorRole = "Editor"
	}
	return s, s.Validate()
}

// Validate says what is wrong with s, every problem at once.
func (s Settings) Validate() error {
	var errs []error
	if s.Addr == "" {
		errs = append(errs, errors.New("addr: the ClickHouse native address (host:9000) is required"))
	}
	if err := storage.ValidIdentifier(s.Database); err != nil {
		errs = append(errs, fmt.Errorf("database: %w", err))
	}
	if s.User == "" {
		errs = append(errs, errors.New("user: the read-only ClickHouse user is required"))
	}
	if s.MaxExecutionSeconds > 600 {
		errs = append(errs, fmt.Errorf("maxExecutionSeconds %d: at most 600", s.MaxExecutionSeconds))
	}
	if s.MaxRows > 1_000_000 {
		errs = append(errs, fmt.Errorf("maxRows %d: at most 1000000", s.MaxRows))
	}
	if s.ApprovalsURL != "" {
		if u, err := url.Parse(s.ApprovalsURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("approvalsUrl %q: want the approvals API's http(s)://host:port", s.ApprovalsURL))
		} else if s.approvalsTLSSet() && u.Scheme != "https" {
			errs = append(errs, fmt.Errorf("approvalsUrl %q: the approvals TLS certificates are set, so the URL must be https://", s.ApprovalsURL))
		}
	}
	if _, err := s.approvalsTLS(); err != nil {
		errs = append(errs, err)
	}
	byApprover := map[string]string{}
	for login, id := range s.ApproverLogins {
		switch {
		case strings.TrimSpace(login) == "":
			errs = append(errs, errors.New("approverLogins: an empty Grafana login"))
		case !approval.ValidName(id):
			errs = append(errs, fmt.Errorf("approverLogins[%q] = %q: want an approver id (letters, digits, _ . @ : -)", login, id))
		case byApprover[id] != "":
			errs = append(errs, fmt.Errorf("approverLogins: approver %q is mapped from both %q and %q; one person, one login", id, min(login, byApprover[id]), max(login, byApprover[id])))
		}
		byApprover[id] = login
	}
	if s.DPUser != "" && s.DPPassword == "" {
		errs = append(errs, fmt.Errorf("dpUser %q: set its password (secureJsonData.dpPassword)", s.DPUser))
	}
	if !(s.DPBudget > 0) || s.DPBudget > 1000 {
		errs = append(errs, fmt.Errorf("dpBudget %v: want an ε budget in (0, 1000]", s.DPBudget))
	}
	if s.DPPeriodDays < 1 || s.DPPeriodDays > 3660 {
		errs = append(errs, fmt.Errorf("dpPeriodDays %d: want 1 to 3660 days", s.DPPeriodDays))
	}
	if _, ok := roleRank[s.OperatorRole]; !ok || s.OperatorRole == "Viewer" {
		errs = append(errs, fmt.Errorf("operatorRole %q: want Editor or Admin", s.OperatorRole))
	}
	return errors.Join(errs...)
}

// roleRank orders Grafana's organisation roles.
var roleRank = map[string]int{"Viewer": 1, "Editor": 2, "Admin": 3}

func brokers(s string) []string {
	var out []string
	for _, b := range strings.Split(s, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// approverOf returns the approver id the Grafana user login votes as: its entry in
// ApproverLogins, or else login itself, unless that id is mapped from another login (then the
// user votes as nobody and ok is false).
func (s Settings) approverOf(login string) (id string, ok bool) {
	if id, ok := s.ApproverLogins[login]; ok {
		return id, true
	}
	for other, id := range s.ApproverLogins {
		if id == login && other != login {
			return "", false
		}
	}
	return login, true
}

func (s Settings) approvalsTLSSet() bool {
	return s.ApprovalsCACert != "" || s.ApprovalsClientCert != "" || s.ApprovalsClientKey != ""
}

// approvalsTLS builds the TLS configuration towards the approvals API from the PEM settings; nil
// when none is set (plain HTTP, or HTTPS verified by the system's roots).
func (s Settings) approvalsTLS() (*tls.Config, error) {
	if !s.approvalsTLSSet() {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS13}
	if s.ApprovalsCACert != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(s.ApprovalsCACert)) {
			return nil, errors.New("approvalsCaCert: no PEM certificate in it")
		}
		tc.RootCAs = pool
	}
	if (s.ApprovalsClientCert == "") != (s.ApprovalsClientKey == "") {
		return nil, errors.New("approvalsClientCert and approvalsClientKey: give both, or neither")
	}
	if s.ApprovalsClientCert != "" {
		cert, err := tls.X509KeyPair([]byte(s.ApprovalsClientCert), []byte(s.ApprovalsClientKey))
		if err != nil {
			return nil, fmt.Errorf("approvalsClientCert with approvalsClientKey: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
