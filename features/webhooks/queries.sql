-- name: insert
INSERT INTO webhook (id, dataset_id, url, events, secret, created_by)
VALUES (%(id)s, %(dataset_id)s, %(url)s, %(events)s, %(secret)s, %(created_by)s)
RETURNING id, dataset_id, url, events, created_by, created_at;

-- name: count_of_dataset
-- How many webhooks a dataset has (a new one past the limit is refused).
SELECT count(*) AS n FROM webhook WHERE dataset_id = %(dataset_id)s;

-- name: lock_dataset
-- One webhook created at a time per dataset (the limit holds under a race): a
-- lock of this transaction on the dataset's id, not a row of another feature's.
SELECT pg_advisory_xact_lock(hashtextextended('webhooks:' || %(dataset_id)s::text, 0));

-- name: list
SELECT w.id, w.dataset_id, w.url, w.events, w.created_by, w.created_at,
       (SELECT jsonb_build_object('state', x.state, 'created_at', x.created_at,
                                  'event', x.event, 'attempts', x.attempts)
        FROM webhook_delivery x WHERE x.webhook_id = w.id
        ORDER BY x.created_at DESC LIMIT 1) AS last_delivery
FROM webhook w WHERE w.dataset_id = %(dataset_id)s
ORDER BY w.created_at, w.id;

-- name: get
SELECT id, dataset_id, url, events, created_by, created_at
FROM webhook WHERE id = %(id)s AND dataset_id = %(dataset_id)s;

-- name: delete
DELETE FROM webhook WHERE id = %(id)s AND dataset_id = %(dataset_id)s RETURNING id;

-- name: emit
-- One delivery of an event per webhook of the dataset that asked for it
-- (``only``: to that webhook alone, whatever its events: a test event),
-- its body written now: the event as it was, whatever happens later.
INSERT INTO webhook_delivery (id, webhook_id, event, body)
SELECT x.id, x.webhook_id, %(event)s,
       (jsonb_build_object('event', %(event)s, 'delivery_id', x.id, 'at', now(),
                           'dataset', jsonb_build_object('id', d.id, 'name', d.name))
        || %(data)s::jsonb)::text
FROM (SELECT gen_random_uuid() AS id, w.id AS webhook_id, w.dataset_id
      FROM webhook w
      WHERE w.dataset_id = %(dataset_id)s
        AND (%(only)s::uuid IS NULL AND %(event)s = ANY (w.events) OR w.id = %(only)s)) x
JOIN dataset d ON d.id = x.dataset_id
RETURNING id;

-- name: claim
-- Take a due delivery for one attempt: a lease (``locked_until``) keeps
-- other workers off it while this one posts; a worker that dies leaves it
-- to the sweep once the lease ends (the claim clears ``sent_at``: taken).
UPDATE webhook_delivery x
SET attempts = x.attempts + 1, locked_until = now() + make_interval(secs => %(lease_s)s),
    sent_at = NULL
FROM webhook w
WHERE x.id = %(id)s AND w.id = x.webhook_id AND x.state = 'pending'
  AND x.next_attempt_at <= now() AND (x.locked_until IS NULL OR x.locked_until < now())
RETURNING x.id, x.event, x.body, x.attempts, x.created_at, w.url, w.secret;

-- name: attempted
INSERT INTO webhook_attempt (delivery_id, attempt, status_code, error, duration_ms)
VALUES (%(id)s, %(attempt)s, %(status_code)s, %(error)s, %(duration_ms)s)
ON CONFLICT DO NOTHING;

-- name: delivered
UPDATE webhook_delivery SET state = 'delivered', finished_at = now(), locked_until = NULL
WHERE id = %(id)s AND attempts = %(attempt)s AND state = 'pending';

-- name: retry_later
-- Another attempt after ``delay_s``, or none (failed) past the retry window.
UPDATE webhook_delivery
SET locked_until = NULL, sent_at = NULL,
    state = CASE WHEN now() + make_interval(secs => %(delay_s)s)
                      > created_at + make_interval(secs => %(window_s)s)
                 THEN 'failed' ELSE 'pending' END,
    finished_at = CASE WHEN now() + make_interval(secs => %(delay_s)s)
                            > created_at + make_interval(secs => %(window_s)s)
                       THEN now() END,
    next_attempt_at = now() + make_interval(secs => %(delay_s)s)
WHERE id = %(id)s AND attempts = %(attempt)s AND state = 'pending'
RETURNING state;

-- name: due
-- Deliveries to send a worker now, marked sent: due and not leased (a
-- retry; one whose worker died mid-post, its lease over), or due and sent
-- long ago but never taken (its message lost: a broker restart). A
-- delivery queued and still waiting in a backlog is not sent again (the
-- queue would fill with copies); one sent twice is posted once: the claim
-- takes it once.
UPDATE webhook_delivery SET sent_at = now()
WHERE id IN (
    SELECT id FROM webhook_delivery
    WHERE state = 'pending' AND next_attempt_at <= now()
      AND CASE WHEN locked_until IS NOT NULL THEN locked_until < now()
               ELSE sent_at IS NULL OR sent_at < now() - interval '10 minutes' END
    ORDER BY next_attempt_at LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED)
RETURNING id;

-- name: give_up
-- Pending deliveries past their retry window and not being posted: failed.
UPDATE webhook_delivery SET state = 'failed', finished_at = now(), locked_until = NULL
WHERE state = 'pending' AND created_at < now() - make_interval(secs => %(window_s)s)
  AND (locked_until IS NULL OR locked_until < now());

-- name: deliveries
-- A webhook's deliveries, newest first, each with its attempts.
SELECT x.id, x.event, x.state, x.attempts, x.created_at, x.next_attempt_at, x.finished_at,
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                    'attempt', a.attempt, 'at', a.at, 'status_code', a.status_code,
                    'error', a.error, 'duration_ms', a.duration_ms) ORDER BY a.attempt)
                 FROM webhook_attempt a WHERE a.delivery_id = x.id), '[]'::jsonb) AS tries,
       count(*) OVER () AS total
FROM webhook_delivery x WHERE x.webhook_id = %(webhook_id)s
ORDER BY x.created_at DESC, x.id
LIMIT %(limit)s OFFSET %(offset)s;

-- name: expire
-- Deliveries that ended long ago (the log keeps ``keep_s`` of them).
DELETE FROM webhook_delivery
WHERE state <> 'pending' AND finished_at < now() - make_interval(secs => %(keep_s)s);
