package privacy

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/mcpwatch/mcpwatch/internal/table"
)

// AnswerColumns name the cells of [Answer.Row].
var AnswerColumns = []string{"aggregate", "value", "epsilon", "error95", "spent", "remaining", "query"}

// Row is the answer as `mcpwatch query --dp` prints it in table and CSV form: the aggregate, the
// noisy value, ε spent, ±Error95 to three significant digits, the analyst's spent and remaining
// ε, and the canonical query.
func (a Answer) Row() []string {
	return []string{string(a.Aggregate), fmt.Sprint(a.Value), fmt.Sprint(a.Epsilon), fmt.Sprintf("±%.3g", a.Error95),
		fmt.Sprint(a.Spent), fmt.Sprint(a.Remaining), a.Query}
}

// Write prints a as `mcpwatch query --dp` does: in JSON the whole answer (noise parameters
// included), otherwise the [AnswerColumns] row.
func (a Answer) Write(w io.Writer, f table.Format) error {
	if f == table.JSON {
		return json.NewEncoder(w).Encode(a)
	}
	return table.Write(w, f, AnswerColumns, [][]string{a.Row()})
}
