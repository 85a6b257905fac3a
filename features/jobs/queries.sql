-- name: insert_job
INSERT INTO job (id, kind, dataset_id, ref_name, upload_id, params, total_bytes, created_by)
VALUES (%(id)s, %(kind)s, %(dataset_id)s, %(ref_name)s, %(upload_id)s, %(params)s,
        %(total_bytes)s, %(created_by)s)
RETURNING *;

-- name: get_job
SELECT * FROM job WHERE id = %(id)s;

-- name: get_jobs
SELECT * FROM job WHERE id = ANY(%(ids)s);

-- name: claim
-- Start a queued job, or restart one whose runner went quiet (no heartbeat
-- for stale_s: its worker died); never take a job from a runner at work.
UPDATE job SET state = 'running', started_at = COALESCE(started_at, now()),
       attempts = attempts + 1, heartbeat_at = now(), rows = 0, bytes = 0
WHERE id = %(id)s
  AND (state = 'queued'
       OR (state = 'running' AND heartbeat_at < now() - make_interval(secs => %(stale_s)s)))
RETURNING *;

-- name: progress
-- A runner's heartbeat: only the latest claim's (a superseded runner stops).
UPDATE job SET rows = %(rows)s, bytes = %(bytes)s, heartbeat_at = now()
WHERE id = %(id)s AND state = 'running'
  AND (%(attempt)s::int IS NULL OR attempts = %(attempt)s)
RETURNING state;

-- name: succeed
UPDATE job SET state = 'succeeded', commit_id = %(commit_id)s, rows = %(rows)s,
       bytes = %(bytes)s, finished_at = now(), heartbeat_at = now(),
       params = params || %(result)s
WHERE id = %(id)s AND state = 'running'
RETURNING kind, extract(epoch FROM finished_at - started_at) AS seconds;

-- name: fail
UPDATE job SET state = 'failed', error = %(error)s, finished_at = now()
WHERE id = %(id)s AND state IN ('queued', 'running')
  AND (%(attempt)s::int IS NULL OR attempts = %(attempt)s)
RETURNING id, kind, dataset_id, ref_name,
          extract(epoch FROM finished_at - coalesce(started_at, created_at)) AS seconds;

-- name: cancel
-- Stop a job that has not ended; its worker notices at its next progress report.
UPDATE job SET state = 'cancelled', finished_at = now()
WHERE id = %(id)s AND state IN ('queued', 'running')
RETURNING *;

-- name: lock_state
-- The job's state, locked until the end of the transaction (the final commit of an import).
SELECT state, attempts FROM job WHERE id = %(id)s FOR UPDATE;

-- name: stale
-- Jobs whose worker went quiet (running, no heartbeat for a while) or whose
-- message never arrived (queued for a while); locked so two reconcilers agree.
SELECT id, kind, state, attempts FROM job
WHERE (state = 'running' AND heartbeat_at < now() - make_interval(secs => %(after_s)s))
   OR (state = 'queued' AND COALESCE(heartbeat_at, created_at) < now() - make_interval(secs => %(after_s)s))
ORDER BY created_at
FOR UPDATE SKIP LOCKED;

-- name: lease
-- Mark a stale job as handled now, so the next reconciler run leaves it alone
-- for a while; a running one goes back to queued (its runner is presumed
-- gone), so the task sent again claims it at once.
UPDATE job SET heartbeat_at = now(),
       state = CASE WHEN state = 'running' THEN 'queued' ELSE state END
WHERE id = %(id)s;

-- name: set_total
UPDATE job SET total_bytes = %(total)s WHERE id = %(id)s;

-- name: requeue
UPDATE job SET state = 'queued'
WHERE id = %(id)s AND state = 'running' AND attempts = %(attempt)s;

-- name: oldest_writer
-- When the oldest queued or running job that writes objects was created
-- (garbage collection keeps what was written since: its partial outputs).
SELECT min(created_at) AS at FROM job
WHERE state IN ('queued', 'running') AND kind <> ALL (%(readers)s::text[]);

-- name: active_of_kind
SELECT EXISTS (SELECT 1 FROM job WHERE kind = %(kind)s AND state IN ('queued', 'running')) AS yes;

-- name: active_counts
SELECT kind, state, count(*) AS n FROM job
WHERE state IN ('queued', 'running') GROUP BY kind, state;

-- name: fail_unfinished
-- After a restore: jobs that were queued or running when the backup was taken.
UPDATE job SET state = 'failed', finished_at = now(), error = %(error)s
WHERE state IN ('queued', 'running');

-- name: active_of_user
-- How many jobs a user has queued or running (job_active_idx, then the user).
SELECT count(*) AS n FROM job
WHERE state IN ('queued', 'running') AND created_by = %(user_id)s;
