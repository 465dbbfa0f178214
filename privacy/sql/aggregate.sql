-- The pool size and clamped sum of one --dp request, as the read-only user. Replayed copies of
-- an event (at-least-once delivery) collapse by id before anything is counted. ${value} is a
-- column expression from the allow-list (0 for count); ${where} is the validated filter with
-- every literal bound as a parameter.
SELECT count() AS pool, sum(v) AS total
FROM
(
    SELECT id, any(least(greatest(toFloat64(${value}), ?), ?)) AS v
    FROM ${database}.events
    WHERE ${where}
    GROUP BY id
)
