-- ε an analyst has spent in the accounting window: reservations minus releases, each ledger
-- row counted once even if an insert was retried.
SELECT sum(e)
FROM
(
    SELECT id, any(epsilon) AS e
    FROM ${database}.privacy_budget
    WHERE analyst = ? AND time >= ?
    GROUP BY id
)
