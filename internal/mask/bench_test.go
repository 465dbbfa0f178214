package mask

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// benchPayload is a realistic ~4 KiB tools/call arguments object: a CRM update with a customer
// record (name, e-mail, phone, RRN, card), free-text notes in Korean and English, line items with
// ids, prices, timestamps and URLs, and a nested request context with a bearer token.
func benchPayload() []byte {
	var items []map[string]any
	for i := range 14 {
		items = append(items, map[string]any{
			"sku": fmt.Sprintf("SKU-%05d-KR", 1000+i), "qty": i%3 + 1, "price": 12900.5 + float64(i),
			"added_at": fmt.Sprintf("2025-01-22T09:%02d:12.345Z", i), "url": fmt.Sprintf("https://shop.example.com/p/%d?ref=mcp", 77000+i),
		})
	}
	args := map[string]any{
		"name": "crm_update_customer",
		"arguments": map[string]any{
			"customer": map[string]any{
				"name": "홍길동", "email": "hong.gildong@example.co.kr", "phone": "010-1234-5678",
				"rrn": "900101-1234567", "card": "4111 1111 1111 1111", "tier": "gold", "since": 2019,
			},
			"notes": strings.Repeat("고객이 배송 지연에 대해 문의함. The customer asked about order ORD-20250122-0042 and a refund to the original payment method; "+
				"agent replied within SLA, see ticket #48213 for the full thread. ", 8),
			"items": items,
			"context": map[string]any{
				"request_id": "7f9c2ba4-e88f-4a2d-9b1e-2c1d0e3f4a5b", "trace": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
				"headers":  map[string]any{"user-agent": "mcp-client/1.4.2 (linux; amd64)", "x-forwarded-for": "203.0.113.7"},
				"upstream": "Bearer 8f14e45fceea167a5a36dedd4bea2543",
			},
		},
	}
	b, err := json.Marshal(args)
	if err != nil {
		panic(err)
	}
	return b
}

// TestBenchPayload keeps the benchmark honest: the payload is about 4 KiB and its PII is found.
func TestBenchPayload(t *testing.T) {
	p := benchPayload()
	if len(p) < 3500 || len(p) > 5000 {
		t.Errorf("payload is %d bytes, want about 4 KiB", len(p))
	}
	m := newMasker(t, Config{})
	_, counts := m.String(string(p))
	for _, k := range []string{KindEmail, KindPhoneKR, KindRRNKR, KindCard, KindBearer} {
		if counts[k] != 1 {
			t.Errorf("String counts %v: want one %s", counts, k)
		}
	}
	_, counts, err := m.JSON(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{KindEmail, KindPhoneKR, KindRRNKR, KindCard, KindBearer} {
		if counts[k] != 1 {
			t.Errorf("JSON counts %v: want one %s", counts, k)
		}
	}
}

func BenchmarkString(b *testing.B) {
	m := newMasker(b, Config{})
	s := string(benchPayload())
	b.SetBytes(int64(len(s)))
	b.ReportAllocs()
	defer cpuThroughput(b, len(s))()
	for b.Loop() {
		m.String(s)
	}
}

func BenchmarkJSON(b *testing.B) {
	m := newMasker(b, Config{})
	p := benchPayload()
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	defer cpuThroughput(b, len(p))()
	for b.Loop() {
		if _, _, err := m.JSON(p); err != nil {
			b.Fatal(err)
		}
	}
}
