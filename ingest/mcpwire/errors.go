package mcpwire

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// ErrorBody encodes a JSON-RPC error response to the request with id, its canonical form
// ([CanonicalID]); "" means null, the id of an error that answers no readable request. A
// canonical id is JSON text, so it goes in as it is; the client sees the same value it sent,
// spelled canonically (a request id 1.0 is answered as 1).
func ErrorBody(id string, code int, msg string) []byte {
	if id == "" {
		id = "null"
	}
	m, _ := json.Marshal(msg)
	return fmt.Appendf(nil, `{"jsonrpc":"2.0","id":%s,"error":{"code":%d,"message":%s}}`, id, code, m)
}

// ErrorResponse is the JSON-RPC error body answering the requests ids (canonical forms): one
// error object, an array of them for a batch (or more than one id), or one error with a null id
// when there is no request to answer.
func ErrorResponse(ids []string, batch bool, code int, msg string) []byte {
	switch {
	case len(ids) == 0:
		return ErrorBody("", code, msg)
	case !batch && len(ids) == 1:
		return ErrorBody(ids[0], code, msg)
	}
	parts := make([][]byte, len(ids))
	for i, id := range ids {
		parts[i] = ErrorBody(id, code, msg)
	}
	return JoinBatch(parts)
}

// JoinBatch joins JSON-RPC messages into a batch: a JSON array of them.
func JoinBatch(msgs [][]byte) []byte {
	return append(append([]byte{'['}, bytes.Join(msgs, []byte{','})...), ']')
}
