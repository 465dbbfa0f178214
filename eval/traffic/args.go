package traffic

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
)

var (
	firstNames = []string{"minji", "jonas", "emma", "liam", "sofia", "noah", "hana", "lukas", "olivia", "ethan", "yuna", "mia"}
	lastNames  = []string{"kim", "mueller", "smith", "park", "schmidt", "johnson", "lee", "fischer", "brown", "choi"}
	tables     = map[string][]string{
		"analyst": {"sales", "revenue", "pipeline", "forecasts"}, "finance-ops": {"ledger", "invoices", "payouts"},
		"engineer": {"deploys", "incidents", "feature_flags"}, "service": {"sales", "revenue", "ledger"},
	}
	services = []string{"billing", "checkout", "search", "auth", "notifications"}
)

func customerEmail(r *rand.Rand) string {
	return fmt.Sprintf("%s.%s%d@example.com", firstNames[r.IntN(len(firstNames))], lastNames[r.IntN(len(lastNames))], r.IntN(100))
}

func phoneKR(r *rand.Rand) string {
	return fmt.Sprintf("010-%04d-%04d", 1000+r.IntN(9000), r.IntN(10000))
}

func js(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // maps of strings and numbers always marshal
	}
	return b
}

// usualArgs are the arguments p's role usually sends to tool a. Some legitimately carry personal
// data: support and sales look customers up by e-mail and write to them.
func usualArgs(r *rand.Rand, p *Principal, a Action) json.RawMessage {
	role := p.Role.Name
	switch a.Server + "/" + a.Name {
	case "data/db_query":
		ts := tables[role]
		if ts == nil {
			ts = tables["analyst"]
		}
		t := ts[r.IntN(len(ts))]
		q := fmt.Sprintf("SELECT region, sum(amount) FROM %s WHERE quarter = 'Q%d' GROUP BY region", t, 1+r.IntN(4))
		if role == "analyst" && r.Float64() < 0.1 {
			q = fmt.Sprintf("SELECT deal, amount FROM %s WHERE owner = '%s'", t, customerEmail(r))
		}
		return js(map[string]any{"sql": q})
	case "data/file_read":
		return js(map[string]any{"path": fmt.Sprintf("/reports/2026/q%d-%s.pdf", 1+r.IntN(4), []string{"sales", "costs", "board"}[r.IntN(3)])})
	case "data/list_tables":
		return js(map[string]any{"schema": "public"})
	case "crm/lookup_customer":
		if r.Float64() < 0.6 {
			return js(map[string]any{"email": customerEmail(r)})
		}
		return js(map[string]any{"customer_id": fmt.Sprintf("C%06d", r.IntN(1000000))})
	case "crm/update_ticket":
		return js(map[string]any{"ticket": fmt.Sprintf("T-%05d", r.IntN(100000)), "status": []string{"open", "pending", "resolved"}[r.IntN(3)],
			"note": "customer contacted about delivery"})
	case "crm/search_tickets":
		return js(map[string]any{"query": []string{"refund delayed", "login problem", "invoice copy", "shipping"}[r.IntN(4)]})
	case "payments/transfer_funds":
		return js(map[string]any{"from": fmt.Sprintf("ACC-%04d", r.IntN(50)), "to": fmt.Sprintf("ACC-%04d", 50+r.IntN(50)),
			"amount": float64(100+r.IntN(20000)) / 1, "currency": "EUR"})
	case "payments/refund":
		return js(map[string]any{"order": fmt.Sprintf("O-%07d", r.IntN(10000000)), "amount": 5 + r.IntN(300)})
	case "payments/get_balance":
		return js(map[string]any{"account": fmt.Sprintf("ACC-%04d", r.IntN(100))})
	case "comms/send_email":
		if role == "support" || role == "sales" {
			return js(map[string]any{"to": customerEmail(r), "subject": "Re: your request", "body": "Thank you for your patience."})
		}
		return js(map[string]any{"to": "group:" + p.PeerGroup, "subject": "weekly numbers", "body": "Numbers attached in the shared folder."})
	case "comms/post_message":
		return js(map[string]any{"channel": "#" + p.PeerGroup, "text": "done, see the dashboard"})
	case "comms/http_post":
		return js(map[string]any{"url": "https://hooks.acme.example/ci/" + services[r.IntN(len(services))], "body": `{"status":"ok"}`})
	case "devops/deploy":
		return js(map[string]any{"service": services[r.IntN(len(services))], "version": fmt.Sprintf("v1.%d.%d", r.IntN(40), r.IntN(10)), "env": []string{"staging", "prod"}[r.IntN(2)]})
	case "devops/read_logs":
		return js(map[string]any{"service": services[r.IntN(len(services))], "since": "15m"})
	case "devops/get_secret":
		return js(map[string]any{"name": "ci/" + services[r.IntN(len(services))] + "-deploy"})
	case "hr/employee_record":
		return js(map[string]any{"employee_id": fmt.Sprintf("E%05d", r.IntN(100000))})
	case "hr/org_chart":
		return js(map[string]any{"department": p.Role.Department})
	}
	return js(map[string]any{})
}

func resourceURI(r *rand.Rand, a Action) string {
	switch {
	case !strings.HasSuffix(a.Name, "/"): // a single file
		return a.Name
	case strings.HasPrefix(a.Name, "file:///reports/"):
		return fmt.Sprintf("%s2026/q%d.pdf", a.Name, 1+r.IntN(4))
	case strings.HasPrefix(a.Name, "s3://"):
		return fmt.Sprintf("%sledger/2026-%02d.parquet", a.Name, 1+r.IntN(12))
	case strings.HasPrefix(a.Name, "hr://"):
		return fmt.Sprintf("%sE%05d", a.Name, r.IntN(100000))
	}
	return fmt.Sprintf("%spage-%d", a.Name, r.IntN(500))
}

// piiDump is a block of customer records: what personal data leaving looks like.
func piiDump(r *rand.Rand, n int) string {
	var b strings.Builder
	for range n {
		fmt.Fprintf(&b, "%s;%s;%d\n", customerEmail(r), phoneKR(r), r.IntN(10000))
	}
	return b.String()
}
