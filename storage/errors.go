package storage

import (
	"errors"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// errRowData marks an INSERT that failed because of the data sent, not because of the server or
// the network: some row in the batch is one the server (or the driver's column conversion) will
// never accept. The sink bisects such a batch to find the rows; every other failure is retried
// with the whole batch.
var errRowData = errors.New("rows refused")

// rowDataCodes are ClickHouse exception codes that blame the inserted values. Everything else —
// network errors, timeouts, memory limits, too many parts, a missing table or column, missing
// privileges, an unknown code — is treated as transient: the batch is retried (and the stage
// logs every attempt), because dead-lettering a whole batch for a server-side problem would lose
// data that a fixed server would have taken.
var rowDataCodes = map[int32]string{
	6:   "CANNOT_PARSE_TEXT",
	27:  "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
	38:  "CANNOT_PARSE_DATE",
	41:  "CANNOT_PARSE_DATETIME",
	53:  "TYPE_MISMATCH",
	69:  "ARGUMENT_OUT_OF_BOUND",
	70:  "CANNOT_CONVERT_TYPE",
	72:  "CANNOT_PARSE_NUMBER",
	117: "INCORRECT_DATA",
	128: "TOO_LARGE_ARRAY_SIZE",
	131: "TOO_LARGE_STRING_SIZE",
	190: "SIZES_OF_ARRAYS_DOESNT_MATCH",
	248: "INVALID_PARTITION_VALUE",
	321: "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
	395: "FUNCTION_THROW_IF_VALUE_IS_NON_ZERO",
	469: "VIOLATED_CONSTRAINT",
}

// isRowData reports whether err blames the inserted values.
func isRowData(err error) bool {
	if errors.Is(err, errRowData) {
		return true
	}
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		_, ok := rowDataCodes[ex.Code]
		return ok
	}
	return false
}
