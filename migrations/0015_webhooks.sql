-- 0015: webhooks (issue 18, features/webhooks). A dataset's webhooks say
-- where to post which events; each event is written as one delivery per
-- webhook in the transaction that made it happen (an outbox: a rolled-back
-- change sends nothing), and workers post the deliveries after commit,
-- retrying with backoff; every attempt is recorded.
CREATE TABLE webhook (
    id uuid PRIMARY KEY,
    dataset_id uuid NOT NULL REFERENCES dataset (id) ON DELETE CASCADE,
    url text NOT NULL,
    events text[] NOT NULL,
    secret text NOT NULL,  -- signs the bodies (HMAC-SHA256); never shown again
    created_by uuid REFERENCES app_user (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT webhook_events_known CHECK (
        cardinality(events) > 0 AND events <@ ARRAY[
            'commit', 'job.failed', 'quality.failed', 'ref.moved', 'schedule.paused'
        ]::text[]
    )
);
CREATE INDEX webhook_dataset_idx ON webhook (dataset_id);

CREATE TABLE webhook_delivery (
    id uuid PRIMARY KEY,  -- X-DSA-Delivery: the same on every attempt
    webhook_id uuid NOT NULL REFERENCES webhook (id) ON DELETE CASCADE,
    event text NOT NULL,
    body text NOT NULL,  -- the JSON posted, as signed
    state text NOT NULL DEFAULT 'pending',
    attempts integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    locked_until timestamptz,  -- a worker is posting it until then
    sent_at timestamptz DEFAULT now(),  -- queued for a worker then (the sweep waits a lease)
    finished_at timestamptz,
    CONSTRAINT webhook_delivery_state CHECK (state IN ('pending', 'delivered', 'failed'))
);
CREATE INDEX webhook_delivery_webhook_idx ON webhook_delivery (webhook_id, created_at DESC);
CREATE INDEX webhook_delivery_due_idx ON webhook_delivery (next_attempt_at)
    WHERE state = 'pending';
CREATE INDEX webhook_delivery_ended_idx ON webhook_delivery (finished_at)
    WHERE state <> 'pending';

CREATE TABLE webhook_attempt (
    delivery_id uuid NOT NULL REFERENCES webhook_delivery (id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    status_code integer,  -- none: no answer (refused, timed out, unreachable)
    error text,
    duration_ms integer NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);
