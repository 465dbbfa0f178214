package approval

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
)

// ClaimFirst claims the approved request id for by (a gateway, or the respond stage carrying out
// a playbook action), waits until the store has read the claim back, and reports whether it was
// the first claim in the log: only the winner acts, so an approval is used once however many
// replicas see it. A claim that cannot be written or read back is an error, and the caller must
// not act (it may try again: a later claim can still win if none did).
func ClaimFirst(ctx context.Context, s *Store, p Producer, id, by string) (won bool, st Status, err error) {
	var nb [16]byte
	_, _ = rand.Read(nb[:])
	c := &Claim{RequestID: id, Gateway: by, Nonce: hex.EncodeToString(nb[:]), Time: s.Now().UTC()}
	key, value, err := EncodeClaim(c)
	if err != nil {
		return false, Status{}, err
	}
	if err := p.Produce(ctx, key, value); err != nil {
		return false, Status{}, fmt.Errorf("write approval claim for %s: %w", id, err)
	}
	err = s.Wait(ctx, func(s *Store) bool {
		var seen bool
		seen, won, st = s.claimSeen(id, c.Nonce)
		return seen
	})
	if err != nil {
		return false, Status{}, fmt.Errorf("approval claim for %s not read back: %w", id, err)
	}
	return won, st, nil
}
