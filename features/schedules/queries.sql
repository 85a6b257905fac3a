-- name: lock_dataset
-- One schedule created at a time per dataset (the limit holds under a race): a
-- lock of this transaction on the dataset's id, not a row of another feature's.
SELECT pg_advisory_xact_lock(hashtextextended('schedules:' || %(dataset_id)s::text, 0));

-- name: count_of_dataset
SELECT count(*) AS n FROM schedule WHERE dataset_id = %(dataset_id)s;

-- name: insert
INSERT INTO schedule (id, dataset_id, branch, cron, urls, checksum, mode, options,
                      table_name, message, next_run_at, created_by)
VALUES (%(id)s, %(dataset_id)s, %(branch)s, %(cron)s, %(urls)s, %(checksum)s, %(mode)s,
        %(options)s, %(table_name)s, %(message)s, %(next_run_at)s, %(created_by)s)
RETURNING *;

-- name: list
SELECT * FROM schedule WHERE dataset_id = %(dataset_id)s ORDER BY created_at, id;

-- name: get
SELECT * FROM schedule WHERE id = %(id)s AND dataset_id = %(dataset_id)s;

-- name: lock
SELECT * FROM schedule WHERE id = %(id)s AND dataset_id = %(dataset_id)s FOR UPDATE;

-- name: update
UPDATE schedule SET cron = %(cron)s, paused = %(paused)s, paused_reason = %(paused_reason)s,
    failures = %(failures)s, next_run_at = %(next_run_at)s, updated_at = now()
WHERE id = %(id)s
RETURNING *;

-- name: delete
DELETE FROM schedule WHERE id = %(id)s AND dataset_id = %(dataset_id)s RETURNING id;

-- name: runs
-- The latest runs of some schedules, newest first (``per`` of each).
SELECT r.* FROM unnest(%(ids)s::uuid[]) AS s(id)
CROSS JOIN LATERAL (
    SELECT * FROM schedule_run x WHERE x.schedule_id = s.id
    ORDER BY x.started_at DESC LIMIT %(per)s
) r
ORDER BY r.schedule_id, r.started_at DESC;

-- name: due
-- Schedules whose time has come, taken by this tick: another beat (or a
-- tick that overran) skips them while this transaction holds them.
SELECT * FROM schedule
WHERE NOT paused AND next_run_at <= now()
ORDER BY next_run_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: set_next
UPDATE schedule SET next_run_at = %(next_run_at)s WHERE id = %(id)s;

-- name: open_run
-- A run of the schedule that has not ended (a next one waits for it).
SELECT id FROM schedule_run WHERE schedule_id = %(id)s AND outcome IS NULL LIMIT 1;

-- name: insert_run
INSERT INTO schedule_run (id, schedule_id, job_id, trigger, due_at, outcome, finished_at,
                          problem)
VALUES (%(id)s, %(schedule_id)s, %(job_id)s, %(trigger)s, %(due_at)s, %(outcome)s,
        CASE WHEN %(outcome)s::text IS NULL THEN NULL ELSE now() END, %(problem)s);

-- name: open_runs
-- Runs waiting for their job to end, taken by this tick.
SELECT id, schedule_id, job_id FROM schedule_run
WHERE outcome IS NULL
ORDER BY started_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: end_run
UPDATE schedule_run SET outcome = %(outcome)s, finished_at = %(finished_at)s,
    commit_id = %(commit_id)s, bytes = %(bytes)s, problem = %(problem)s
WHERE id = %(id)s;

-- name: succeeded
-- A run that worked: the failures in a row start again, and the next run
-- asks with this download's validators (none: the download had none),
-- while the branch is still at the commit they matched.
UPDATE schedule SET failures = 0,
    etag = CASE WHEN %(validators)s THEN %(etag)s ELSE etag END,
    last_modified = CASE WHEN %(validators)s THEN %(last_modified)s ELSE last_modified END,
    validated_commit = CASE WHEN %(validators)s THEN %(commit_id)s ELSE validated_commit END
WHERE id = %(id)s;

-- name: failed
-- One more failed run in a row.
UPDATE schedule SET failures = failures + 1, updated_at = now()
WHERE id = %(id)s
RETURNING failures, paused, dataset_id, branch;

-- name: pause
UPDATE schedule SET paused = true, paused_reason = %(reason)s, updated_at = now()
WHERE id = %(id)s AND NOT paused
RETURNING id;

-- name: expire_runs
-- Ended runs older than the retention (the latest of each schedule kept).
DELETE FROM schedule_run r
WHERE r.outcome IS NOT NULL AND r.started_at < now() - make_interval(secs => %(keep_s)s)
  AND r.id <> (SELECT x.id FROM schedule_run x WHERE x.schedule_id = r.schedule_id
               ORDER BY x.started_at DESC LIMIT 1);
