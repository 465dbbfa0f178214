package demo

import (
	"strings"
	"testing"
)

// acme-docs must look like the converter it claims to be, so that the demo's caller sees an
// ordinary answer while its dependency misbehaves: headings, emphasis and paragraphs become text
// or HTML (escaped), and an unknown format is refused with the formats it knows. If this failed,
// the third act's "ordinary answer" would be a lie or a crash.
func TestConvertDocument(t *testing.T) {
	doc := "# Q3 <summary>\nRevenue grew **12%** in `APAC`."
	for _, c := range []struct{ format, want string }{
		{"", "Q3 <SUMMARY>\nRevenue grew 12% in APAC.\n"},
		{"text", "Q3 <SUMMARY>\nRevenue grew 12% in APAC.\n"},
		{"html", "<h1>Q3 &lt;summary&gt;</h1>\n<p>Revenue grew 12% in APAC.</p>\n"},
	} {
		got, err := convert(doc, c.format)
		if err != nil || got != c.want {
			t.Errorf("convert(%q) = %q, %v; want %q", c.format, got, err, c.want)
		}
	}
	if _, err := convert(doc, "pdf"); err == nil || !strings.Contains(err.Error(), "want text or html") {
		t.Errorf("format pdf: %v, want a refusal naming text and html", err)
	}
}
