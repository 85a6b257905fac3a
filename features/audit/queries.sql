-- name: entries
-- One page of the audit log, newest first, with the total matching.
SELECT id, at, actor, action, dataset_id, target, ip, outcome, details,
       count(*) OVER () AS total
FROM audit_log
WHERE (%(dataset_id)s::uuid IS NULL OR dataset_id = %(dataset_id)s)
  AND (%(actor)s::text IS NULL OR actor = %(actor)s)
  AND (%(action)s::text IS NULL OR action = %(action)s OR action LIKE %(action)s || '.%%')
  AND (%(since)s::timestamptz IS NULL OR at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR at < %(until)s)
ORDER BY id DESC
LIMIT %(limit)s OFFSET %(offset)s;

-- name: export
-- Every matching entry, oldest first (read through a server-side cursor).
SELECT id, at, actor, action, dataset_id, target, ip, outcome, details
FROM audit_log
WHERE (%(dataset_id)s::uuid IS NULL OR dataset_id = %(dataset_id)s)
  AND (%(actor)s::text IS NULL OR actor = %(actor)s)
  AND (%(action)s::text IS NULL OR action = %(action)s OR action LIKE %(action)s || '.%%')
  AND (%(since)s::timestamptz IS NULL OR at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR at < %(until)s)
ORDER BY id;
