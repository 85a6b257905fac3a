-- The schema built by the numbered migrations (checked by tests/core/test_migrate.py).

TABLE api_token
  id uuid NOT NULL
  user_id uuid NOT NULL
  name text NOT NULL
  token_hash text NOT NULL
  created_at timestamp with time zone NOT NULL DEFAULT now()
  expires_at timestamp with time zone
  scopes ARRAY NOT NULL DEFAULT '{read,write,admin}'::text[]
  datasets ARRAY
  parent_id uuid
  CONSTRAINT api_token_hash_key UNIQUE (token_hash)
  CONSTRAINT api_token_parent_id_fkey FOREIGN KEY (parent_id) REFERENCES api_token(id) ON DELETE CASCADE
  CONSTRAINT api_token_pkey PRIMARY KEY (id)
  CONSTRAINT api_token_scopes_check CHECK ((scopes <@ '{read,write,admin}'::text[]))
  CONSTRAINT api_token_user_id_fkey FOREIGN KEY (user_id) REFERENCES app_user(id) ON DELETE CASCADE
  CREATE UNIQUE INDEX api_token_hash_key ON public.api_token USING btree (token_hash)
  CREATE INDEX api_token_parent_idx ON public.api_token USING btree (parent_id) WHERE (parent_id IS NOT NULL)
  CREATE UNIQUE INDEX api_token_pkey ON public.api_token USING btree (id)

TABLE app_user
  id uuid NOT NULL
  username text NOT NULL
  password_hash text NOT NULL
  is_admin boolean NOT NULL DEFAULT false
  created_at timestamp with time zone NOT NULL DEFAULT now()
  disabled boolean NOT NULL DEFAULT false
  token_version integer NOT NULL DEFAULT 0
  must_change_password boolean NOT NULL DEFAULT false
  CONSTRAINT app_user_pkey PRIMARY KEY (id)
  CONSTRAINT app_user_username_key UNIQUE (username)
  CREATE UNIQUE INDEX app_user_pkey ON public.app_user USING btree (id)
  CREATE UNIQUE INDEX app_user_username_key ON public.app_user USING btree (username)

TABLE audit_log
  id bigint NOT NULL
  at timestamp with time zone NOT NULL DEFAULT clock_timestamp()
  actor_id uuid
  actor text
  action text NOT NULL
  dataset_id uuid
  target text
  ip text
  outcome text NOT NULL DEFAULT 'ok'::text
  details jsonb NOT NULL DEFAULT '{}'::jsonb
  CONSTRAINT audit_log_outcome_check CHECK ((outcome = ANY (ARRAY['ok'::text, 'denied'::text, 'failed'::text])))
  CONSTRAINT audit_log_pkey PRIMARY KEY (id)
  CREATE INDEX audit_log_actor_idx ON public.audit_log USING btree (actor, id)
  CREATE INDEX audit_log_at_idx ON public.audit_log USING btree (at)
  CREATE INDEX audit_log_dataset_idx ON public.audit_log USING btree (dataset_id, id)
  CREATE UNIQUE INDEX audit_log_pkey ON public.audit_log USING btree (id)

TABLE commit
  dataset_id uuid NOT NULL
  id text NOT NULL
  parents ARRAY NOT NULL
  author text NOT NULL
  message text NOT NULL
  created_at timestamp with time zone NOT NULL
  tables jsonb NOT NULL
  provenance jsonb NOT NULL DEFAULT '{}'::jsonb
  row_count bigint NOT NULL
  table_count integer NOT NULL
  depth integer NOT NULL
  generation integer NOT NULL
  chain bigint NOT NULL
  chain_pos integer NOT NULL
  CONSTRAINT commit_chain_key UNIQUE (dataset_id, chain, chain_pos)
  CONSTRAINT commit_dataset_id_fkey FOREIGN KEY (dataset_id) REFERENCES dataset(id) ON DELETE CASCADE
  CONSTRAINT commit_pkey PRIMARY KEY (dataset_id, id)
  CREATE INDEX commit_chain_generation_idx ON public.commit USING btree (dataset_id, chain, generation) INCLUDE (created_at, id)
  CREATE UNIQUE INDEX commit_chain_key ON public.commit USING btree (dataset_id, chain, chain_pos)
  CREATE INDEX commit_id_prefix_idx ON public.commit USING btree (dataset_id, id text_pattern_ops)
  CREATE UNIQUE INDEX commit_pkey ON public.commit USING btree (dataset_id, id)

TABLE commit_link
  dataset_id uuid NOT NULL
  chain bigint NOT NULL
  chain_pos integer NOT NULL
  parent_index integer NOT NULL
  parent_chain bigint NOT NULL
  parent_pos integer NOT NULL
  parent_generation integer NOT NULL
  CONSTRAINT commit_link_commit_fkey FOREIGN KEY (dataset_id, chain, chain_pos) REFERENCES commit(dataset_id, chain, chain_pos) ON DELETE CASCADE
  CONSTRAINT commit_link_pkey PRIMARY KEY (dataset_id, chain, chain_pos, parent_index)
  CREATE UNIQUE INDEX commit_link_pkey ON public.commit_link USING btree (dataset_id, chain, chain_pos, parent_index)

TABLE dataset
  id uuid NOT NULL
  name text NOT NULL
  description text NOT NULL DEFAULT ''::text
  primary_key ARRAY
  visibility text NOT NULL DEFAULT 'private'::text
  default_branch text NOT NULL DEFAULT 'main'::text
  created_by uuid
  created_at timestamp with time zone NOT NULL DEFAULT now()
  updated_at timestamp with time zone NOT NULL DEFAULT now()
  deleted_at timestamp with time zone
  tags ARRAY NOT NULL DEFAULT '{}'::text[]
  readme text NOT NULL DEFAULT ''::text
  catalog_tables ARRAY NOT NULL DEFAULT '{}'::text[]
  catalog_columns ARRAY NOT NULL DEFAULT '{}'::text[]
  catalog_commit text
  search tsvector NOT NULL DEFAULT ''::tsvector
  search_head tsvector NOT NULL DEFAULT ''::tsvector
  CONSTRAINT dataset_created_by_fkey FOREIGN KEY (created_by) REFERENCES app_user(id)
  CONSTRAINT dataset_pkey PRIMARY KEY (id)
  CONSTRAINT dataset_visibility_check CHECK ((visibility = ANY (ARRAY['private'::text, 'internal'::text, 'public'::text])))
  CREATE UNIQUE INDEX dataset_name_key ON public.dataset USING btree (name) WHERE (deleted_at IS NULL)
  CREATE UNIQUE INDEX dataset_pkey ON public.dataset USING btree (id)
  CREATE INDEX dataset_search_head_idx ON public.dataset USING gin (search_head) WHERE (deleted_at IS NULL)
  CREATE INDEX dataset_search_idx ON public.dataset USING gin (search) WHERE (deleted_at IS NULL)
  CREATE INDEX dataset_tags_idx ON public.dataset USING gin (tags) WHERE (deleted_at IS NULL)

TABLE dataset_object
  dataset_id uuid NOT NULL
  key text NOT NULL
  bytes bigint NOT NULL
  added_at timestamp with time zone NOT NULL DEFAULT now()
  CONSTRAINT dataset_object_dataset_id_fkey FOREIGN KEY (dataset_id) REFERENCES dataset(id) ON DELETE CASCADE
  CONSTRAINT dataset_object_pkey PRIMARY KEY (dataset_id, key)
  CREATE INDEX dataset_object_key_idx ON public.dataset_object USING btree (key)
  CREATE UNIQUE INDEX dataset_object_pkey ON public.dataset_object USING btree (dataset_id, key)

TABLE dataset_permission
  dataset_id uuid NOT NULL
  user_id uuid NOT NULL
  role text NOT NULL
  granted_at timestamp with time zone NOT NULL DEFAULT now()
  CONSTRAINT dataset_permission_dataset_id_fkey FOREIGN KEY (dataset_id) REFERENCES dataset(id) ON DELETE CASCADE
  CONSTRAINT dataset_permission_pkey PRIMARY KEY (dataset_id, user_id)
  CONSTRAINT dataset_permission_role_check CHECK ((role = ANY (ARRAY['read'::text, 'write'::text, 'admin'::text])))
  CONSTRAINT dataset_permission_user_id_fkey FOREIGN KEY (user_id) REFERENCES app_user(id) ON DELETE CASCADE
  CREATE UNIQUE INDEX dataset_permission_pkey ON public.dataset_permission USING btree (dataset_id, user_id)

TABLE disjoint_rows
  dataset_id uuid NOT NULL
  base_manifest_id text NOT NULL
  head_manifest_id text NOT NULL
  created_at timestamp with time zone NOT NULL DEFAULT now()
  CONSTRAINT disjoint_rows_dataset_fkey FOREIGN KEY (dataset_id) REFERENCES dataset(id) ON DELETE CASCADE
  CONSTRAINT disjoint_rows_pkey PRIMARY KEY (dataset_id, base_manifest_id, head_manifest_id)
  CREATE UNIQUE INDEX disjoint_rows_pkey ON public.disjoint_rows USING btree (dataset_id, base_manifest_id, head_manifest_id)

TABLE job
  id uuid NOT NULL
  kind text NOT NULL
  dataset_id uuid
  ref_name text
  upload_id uuid
  state text NOT NULL DEFAULT 'queued'::text
  params jsonb NOT NULL DEFAULT '{}'::jsonb
  rows bigint NOT NULL DEFAULT 0
  bytes bigint NOT NULL DEFAULT 0
  total_bytes bigint
  commit_id text
  error jsonb
  attempts integer NOT NULL DEFAULT 0
  created_by uuid
  created_at timestamp with time zone NOT NULL DEFAULT now()
  started_at timestamp with time zone
  finished_at timestamp with time zone
  heartbeat_at timestamp with time zone
  CONSTRAINT job_created_by_fkey FOREIGN KEY (created_by) REFERENCES app_user(id)
  CONSTRAINT job_dataset_id_fkey FOREIGN KEY (dataset_id) REFERENCES dataset(id) ON DELETE CASCADE
  CONSTRAINT job_pkey PRIMARY KEY (id)
  CONSTRAINT job_state_check CHECK ((state = ANY (ARRAY['queued'::text, 'running'::text, 'succeeded'::text, 'failed'::text, 'cancelled'::text])))
  CONSTRAINT job_upload_id_fkey FOREIGN KEY (upload_id) REFERENCES upload(id) ON DELETE SET NULL
  CREATE INDEX job_active_idx ON public.job USING btree (state) WHERE (state = ANY (ARRAY['queued'::text, 'running'::text]))
  CREATE INDEX job_dataset_idx ON public.job USING btree (dataset_id, created_at DESC)
  CREATE UNIQUE INDEX job_pkey ON public.job USING btree (id)

TABLE layout
  manifest_id text NOT NULL
  schema_id text NOT NULL
  state text NOT NULL DEFAULT 'building'::text
  row_count bigint NOT NULL
  object_prefix text
  part_rows integer
  digest text
  bytes bigint
  requested_at timestamp with time zone NOT NULL DEFAULT now()
  built_at timestamp with time zone
  used_at timestamp with time zone NOT NULL DEFAULT now()
  CONSTRAINT layout_pkey PRIMARY KEY (manifest_id)
  CONSTRAINT layout_state_check CHECK ((state = ANY (ARRAY['building'::text, 'ready'::text])))
  CREATE UNIQUE INDEX layout_pkey ON public.layout USING btree (manifest_id)
  CREATE INDEX layout_used_idx ON public.layout USING btree (used_at) WHERE (state = 'ready'::text)

TABLE quality_config
  dataset_id uuid NOT NULL
  rules jsonb NOT NULL
  threshold double precision NOT NULL
  gate_branches ARRAY NOT NULL
  digest text NOT NULL
  updated_by text
  updated_at timestamp with time zone NOT NULL DEFAULT now()
  CONSTRAINT quality_config_dataset_id_fkey FOREIGN KEY (dataset_id) REFERENCES dataset(id) ON DELETE CASCADE
  CONSTRAINT quality_config_pkey PRIMARY KEY (dataset_id)
  CREATE UNIQUE INDEX quality_config_pkey ON public.quality_config USING btree (dataset_id)

TABLE quality_result
  dataset_id uuid NOT NULL
  commit_id text NOT NULL
  digest text NOT NULL
  report jsonb NOT NULL
  created_at timestamp with time zone NOT NULL DEFAULT now()
  CONSTRAINT quality_result_dataset_id_fkey FOREIGN KEY (dataset_id) REFERENCES dataset(id) ON DELETE CASCADE
  CONSTRAINT quality_result_pkey PRIMARY KEY (dataset_id, commit_id, digest)
  CREATE UNIQUE INDEX quality_result_pkey ON public.quality_result USING btree (dataset_id, commit_id, digest)

TABLE ref
  dataset_id uuid NOT NULL
  name text NOT NULL
  kind text NOT NULL
  commit_id text NOT NULL
  protected boolean NOT NULL DEFAULT false
  message text
  created_by text
  created_at timestamp with time zone NOT NULL DEFAULT now()
  updated_at timestamp with time zone NOT NULL DEFAULT now()
  CONSTRAINT ref_commit_fkey FOREIGN KEY (dataset_id, commit_id) REFERENCES commit(dataset_id, id)
  CONSTRAINT ref_dataset_id_fkey FOREIGN KEY (dataset_id) REFERENCES dataset(id) ON DELETE CASCADE
  CONSTRAINT ref_kind_check CHECK ((kind = ANY (ARRAY['branch'::text, 'tag'::text])))
  CONSTRAINT ref_pkey PRIMARY KEY (dataset_id, name)
  CREATE UNIQUE INDEX ref_pkey ON public.ref USING btree (dataset_id, name)

TABLE ref_log
  id bigint NOT NULL
  dataset_id uuid NOT NULL
  ref_name text NOT NULL
  kind text NOT NULL
  action text NOT NULL
  old_commit_id text
  new_commit_id text
  actor text NOT NULL
  reason text NOT NULL DEFAULT ''::text
  created_at timestamp with time zone NOT NULL DEFAULT clock_timestamp()
  CONSTRAINT ref_log_action_check CHECK ((action = ANY (ARRAY['create'::text, 'move'::text, 'protect'::text, 'unprotect'::text, 'delete'::text])))
  CONSTRAINT ref_log_dataset_id_fkey FOREIGN KEY (dataset_id) REFERENCES dataset(id) ON DELETE CASCADE
  CONSTRAINT ref_log_kind_check CHECK ((kind = ANY (ARRAY['branch'::text, 'tag'::text])))
  CONSTRAINT ref_log_pkey PRIMARY KEY (id)
  CREATE UNIQUE INDEX ref_log_pkey ON public.ref_log USING btree (id)
  CREATE INDEX ref_log_ref_idx ON public.ref_log USING btree (dataset_id, ref_name, id DESC)

TABLE revoked_session
  jti uuid NOT NULL
  expires_at timestamp with time zone NOT NULL
  CONSTRAINT revoked_session_pkey PRIMARY KEY (jti)
  CREATE INDEX revoked_session_expires_idx ON public.revoked_session USING btree (expires_at)
  CREATE UNIQUE INDEX revoked_session_pkey ON public.revoked_session USING btree (jti)

TABLE schedule
  id uuid NOT NULL
  dataset_id uuid NOT NULL
  branch text NOT NULL
  cron text NOT NULL
  urls ARRAY NOT NULL
  checksum text
  mode text NOT NULL DEFAULT 'replace'::text
  options jsonb NOT NULL DEFAULT '{}'::jsonb
  table_name text
  message text
  paused boolean NOT NULL DEFAULT false
  paused_reason text
  failures integer NOT NULL DEFAULT 0
  next_run_at timestamp with time zone
  etag text
  last_modified text
  validated_commit text
  created_by uuid
  created_at timestamp with time zone NOT NULL DEFAULT now()
  updated_at timestamp with time zone NOT NULL DEFAULT now()
  CONSTRAINT schedule_created_by_fkey FOREIGN KEY (created_by) REFERENCES app_user(id) ON DELETE SET NULL
  CONSTRAINT schedule_dataset_id_fkey FOREIGN KEY (dataset_id) REFERENCES dataset(id) ON DELETE CASCADE
  CONSTRAINT schedule_pkey PRIMARY KEY (id)
  CREATE INDEX schedule_dataset_idx ON public.schedule USING btree (dataset_id)
  CREATE INDEX schedule_due_idx ON public.schedule USING btree (next_run_at) WHERE (NOT paused)
  CREATE UNIQUE INDEX schedule_pkey ON public.schedule USING btree (id)

TABLE schedule_run
  id uuid NOT NULL
  schedule_id uuid NOT NULL
  job_id uuid
  trigger text NOT NULL
  due_at timestamp with time zone NOT NULL
  started_at timestamp with time zone NOT NULL DEFAULT now()
  finished_at timestamp with time zone
  outcome text
  commit_id text
  bytes bigint
  problem jsonb
  CONSTRAINT schedule_run_job_id_fkey FOREIGN KEY (job_id) REFERENCES job(id) ON DELETE SET NULL
  CONSTRAINT schedule_run_outcome CHECK (((outcome IS NULL) OR (outcome = ANY (ARRAY['committed'::text, 'unchanged'::text, 'failed'::text, 'skipped'::text]))))
  CONSTRAINT schedule_run_pkey PRIMARY KEY (id)
  CONSTRAINT schedule_run_schedule_id_fkey FOREIGN KEY (schedule_id) REFERENCES schedule(id) ON DELETE CASCADE
  CONSTRAINT schedule_run_trigger CHECK ((trigger = ANY (ARRAY['cron'::text, 'catch-up'::text, 'manual'::text])))
  CREATE INDEX schedule_run_open_idx ON public.schedule_run USING btree (schedule_id) WHERE (outcome IS NULL)
  CREATE UNIQUE INDEX schedule_run_pkey ON public.schedule_run USING btree (id)
  CREATE INDEX schedule_run_schedule_idx ON public.schedule_run USING btree (schedule_id, started_at DESC)

TABLE schema_migration
  version integer NOT NULL
  name text NOT NULL
  applied_at timestamp with time zone NOT NULL DEFAULT now()
  CONSTRAINT schema_migration_pkey PRIMARY KEY (version)
  CREATE UNIQUE INDEX schema_migration_pkey ON public.schema_migration USING btree (version)

TABLE stored_export
  key text NOT NULL
  dataset_id uuid NOT NULL
  commit_id text NOT NULL
  bytes bigint NOT NULL
  created_at timestamp with time zone NOT NULL DEFAULT now()
  used_at timestamp with time zone NOT NULL DEFAULT now()
  CONSTRAINT stored_export_pkey PRIMARY KEY (key)
  CREATE UNIQUE INDEX stored_export_pkey ON public.stored_export USING btree (key)
  CREATE INDEX stored_export_used_idx ON public.stored_export USING btree (used_at)

TABLE table_digest
  manifest_id text NOT NULL
  digest text NOT NULL
  row_count bigint NOT NULL
  created_at timestamp with time zone NOT NULL DEFAULT now()
  CONSTRAINT table_digest_pkey PRIMARY KEY (manifest_id)
  CREATE UNIQUE INDEX table_digest_pkey ON public.table_digest USING btree (manifest_id)

TABLE table_stats
  manifest_id text NOT NULL
  schema_id text NOT NULL
  version integer NOT NULL
  stats jsonb NOT NULL
  seconds double precision NOT NULL
  created_at timestamp with time zone NOT NULL DEFAULT now()
  CONSTRAINT table_stats_pkey PRIMARY KEY (manifest_id, schema_id)
  CREATE UNIQUE INDEX table_stats_pkey ON public.table_stats USING btree (manifest_id, schema_id)

TABLE upload
  id uuid NOT NULL
  dataset_id uuid NOT NULL
  object_key text NOT NULL
  filename text NOT NULL
  size bigint NOT NULL
  blake3 text NOT NULL
  created_by uuid
  created_at timestamp with time zone NOT NULL DEFAULT now()
  CONSTRAINT upload_created_by_fkey FOREIGN KEY (created_by) REFERENCES app_user(id)
  CONSTRAINT upload_dataset_id_fkey FOREIGN KEY (dataset_id) REFERENCES dataset(id) ON DELETE CASCADE
  CONSTRAINT upload_pkey PRIMARY KEY (id)
  CREATE UNIQUE INDEX upload_pkey ON public.upload USING btree (id)

TABLE webhook
  id uuid NOT NULL
  dataset_id uuid NOT NULL
  url text NOT NULL
  events ARRAY NOT NULL
  secret text NOT NULL
  created_by uuid
  created_at timestamp with time zone NOT NULL DEFAULT now()
  CONSTRAINT webhook_created_by_fkey FOREIGN KEY (created_by) REFERENCES app_user(id) ON DELETE SET NULL
  CONSTRAINT webhook_dataset_id_fkey FOREIGN KEY (dataset_id) REFERENCES dataset(id) ON DELETE CASCADE
  CONSTRAINT webhook_events_known CHECK (((cardinality(events) > 0) AND (events <@ ARRAY['commit'::text, 'job.failed'::text, 'quality.failed'::text, 'ref.moved'::text, 'schedule.paused'::text])))
  CONSTRAINT webhook_pkey PRIMARY KEY (id)
  CREATE INDEX webhook_dataset_idx ON public.webhook USING btree (dataset_id)
  CREATE UNIQUE INDEX webhook_pkey ON public.webhook USING btree (id)

TABLE webhook_attempt
  delivery_id uuid NOT NULL
  attempt integer NOT NULL
  at timestamp with time zone NOT NULL DEFAULT now()
  status_code integer
  error text
  duration_ms integer NOT NULL
  CONSTRAINT webhook_attempt_delivery_id_fkey FOREIGN KEY (delivery_id) REFERENCES webhook_delivery(id) ON DELETE CASCADE
  CONSTRAINT webhook_attempt_pkey PRIMARY KEY (delivery_id, attempt)
  CREATE UNIQUE INDEX webhook_attempt_pkey ON public.webhook_attempt USING btree (delivery_id, attempt)

TABLE webhook_delivery
  id uuid NOT NULL
  webhook_id uuid NOT NULL
  event text NOT NULL
  body text NOT NULL
  state text NOT NULL DEFAULT 'pending'::text
  attempts integer NOT NULL DEFAULT 0
  created_at timestamp with time zone NOT NULL DEFAULT now()
  next_attempt_at timestamp with time zone NOT NULL DEFAULT now()
  locked_until timestamp with time zone
  sent_at timestamp with time zone DEFAULT now()
  finished_at timestamp with time zone
  CONSTRAINT webhook_delivery_pkey PRIMARY KEY (id)
  CONSTRAINT webhook_delivery_state CHECK ((state = ANY (ARRAY['pending'::text, 'delivered'::text, 'failed'::text])))
  CONSTRAINT webhook_delivery_webhook_id_fkey FOREIGN KEY (webhook_id) REFERENCES webhook(id) ON DELETE CASCADE
  CREATE INDEX webhook_delivery_due_idx ON public.webhook_delivery USING btree (next_attempt_at) WHERE (state = 'pending'::text)
  CREATE INDEX webhook_delivery_ended_idx ON public.webhook_delivery USING btree (finished_at) WHERE (state <> 'pending'::text)
  CREATE UNIQUE INDEX webhook_delivery_pkey ON public.webhook_delivery USING btree (id)
  CREATE INDEX webhook_delivery_webhook_idx ON public.webhook_delivery USING btree (webhook_id, created_at DESC)

TABLE write_hold
  id uuid NOT NULL
  what text NOT NULL
  started_at timestamp with time zone NOT NULL DEFAULT clock_timestamp()
  CONSTRAINT write_hold_pkey PRIMARY KEY (id)
  CREATE UNIQUE INDEX write_hold_pkey ON public.write_hold USING btree (id)
