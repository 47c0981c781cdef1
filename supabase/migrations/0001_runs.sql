-- jobtail: runs and their numbered log lines. Idempotent: safe to apply twice.
--
-- A run has one writer that numbers its lines seq = 1, 2, 3...; (run_id, seq) is unique so a
-- retried append never duplicates, and runs.last_seq advances in the same transaction as the
-- rows (see jobtail_append), so last_seq = N proves lines 1..N are committed.

create table if not exists runs (
    run_id       text primary key,
    upload_id    text not null,
    service_name text not null,
    status       text not null default 'queued'
                 constraint runs_status_check
                 check (status in ('queued', 'running', 'succeeded', 'failed')),
    created_at   timestamptz not null default now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    heartbeat_at timestamptz,
    last_seq     bigint not null default 0,
    error        text
);

-- latest_run / list_runs for a key, newest first
create index if not exists runs_key
    on runs (upload_id, service_name, created_at desc, run_id desc);
-- list_runs without a key
create index if not exists runs_created on runs (created_at desc, run_id desc);
-- at most one queued or running run per key (create_run relies on it)
create unique index if not exists runs_one_active
    on runs (upload_id, service_name) where status in ('queued', 'running');
-- fail_stale scans active runs by their last sign of life
create index if not exists runs_active_heartbeat
    on runs ((coalesce(heartbeat_at, created_at))) where status in ('queued', 'running');
-- purge scans finished runs by age
create index if not exists runs_finished
    on runs (finished_at) where status in ('succeeded', 'failed');

create table if not exists runs_logs (
    -- arrival order for ad-hoc SQL; no index of its own: one B-tree per line, not two, makes
    -- batched appends about 1.6x faster
    id           bigint generated always as identity,
    -- no foreign key to runs: jobtail_append checks the run, jobtail_purge deletes the lines
    run_id       text not null,
    seq          bigint not null constraint runs_logs_seq_check check (seq > 0),
    upload_id    text not null,
    service_name text not null,
    "timestamp"  timestamptz not null,
    log_level    text not null,
    level_no     integer not null,
    message      text not null,
    fields       jsonb,
    -- the key: idempotent appends, (run_id, seq) range reads, purges by run
    constraint runs_logs_pkey primary key (run_id, seq)
);
