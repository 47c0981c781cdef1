-- jobtail: fenced writers. A run's log is an append-only stream with one writer at a time, as
-- Durable Streams' idempotent producers: each claim bumps runs.epoch; a write from an older epoch
-- is refused (PT403, HTTP 403 through PostgREST), a finished run refuses new lines (PT409) and so
-- does a gap in seq (PT409); lines at or below last_seq are retries and change nothing. Finishing
-- is atomic with the final lines, and the janitor closes a silent run with a compare-and-close
-- that bumps the epoch, so a stalled worker that wakes up can never write after `end`. The error
-- detail is JSON ({"reason", "run_id", ...}) for the client to rebuild the error. Idempotent.

alter table runs add column if not exists epoch bigint not null default 0;

-- the refusal, with a JSON detail the stores turn back into RunFencedError / SeqGapError
create or replace function jobtail__refuse(r runs, p_reason text, p_expected bigint default null,
                                           p_received bigint default null)
returns void language plpgsql as $$
begin
    if p_reason = 'stale_epoch' then
        raise exception 'jobtail: run % was claimed by a newer writer (epoch %)', r.run_id, r.epoch
            using errcode = 'PT403', detail = json_build_object(
                'reason', p_reason, 'run_id', r.run_id, 'epoch', r.epoch, 'status', r.status)::text;
    elsif p_reason = 'closed' then
        raise exception 'jobtail: run % is closed (%)', r.run_id, r.status
            using errcode = 'PT409', detail = json_build_object(
                'reason', p_reason, 'run_id', r.run_id, 'epoch', r.epoch, 'status', r.status)::text;
    else
        raise exception 'jobtail: run % expects seq % next, not %', r.run_id, p_expected, p_received
            using errcode = 'PT409', detail = json_build_object(
                'reason', 'gap', 'run_id', r.run_id, 'expected', p_expected,
                'received', p_received)::text;
    end if;
end
$$;

-- Write lines to a run the caller holds locked (select ... for update), checked in the
-- protocol's order: stale epoch, then new lines on a closed run, then a gap. Lines numbered 0
-- are numbered after last_seq (a closer that is not the writer: the janitor). The new lines are
-- inserted first and checked from what the insert returns (one pass over the JSON); a refusal
-- raises, which undoes the insert with the rest of the statement. Returns last_seq.
create or replace function jobtail__write(r runs, p_lines jsonb, p_epoch bigint)
returns bigint language plpgsql as $$
declare
    v_count bigint;
    v_first bigint;
    v_max bigint;
begin
    if p_epoch is not null and p_epoch <> r.epoch then
        perform jobtail__refuse(r, 'stale_epoch');
    end if;
    with l as (
        select case when coalesce(j.seq, 0) = 0 then r.last_seq + row_number() over ()
                    else j.seq end as seq,
               j."timestamp", j.log_level, j.level_no, j.message, j.fields
          from jsonb_to_recordset(coalesce(p_lines, '[]'::jsonb)) as j(
              seq bigint, "timestamp" timestamptz, log_level text, level_no integer,
              message text, fields jsonb)
    ), inserted as (
        insert into runs_logs (run_id, seq, upload_id, service_name, "timestamp", log_level,
                               level_no, message, fields)
        select r.run_id, l.seq, r.upload_id, r.service_name,
               coalesce(l."timestamp", clock_timestamp()), coalesce(l.log_level, 'INFO'),
               coalesce(l.level_no, case upper(l.log_level)
                   when 'DEBUG' then 10 when 'INFO' then 20 when 'WARNING' then 30
                   when 'WARN' then 30 when 'ERROR' then 40 when 'CRITICAL' then 50
                   when 'FATAL' then 50 else 20 end),
               coalesce(l.message, ''), nullif(l.fields, 'null'::jsonb)
          from l
         where l.seq > r.last_seq
         order by l.seq
        on conflict (run_id, seq) do nothing
        returning seq
    )
    select count(*), min(seq), max(seq) into v_count, v_first, v_max from inserted;
    if v_count = 0 then
        return r.last_seq;  -- a retry: every line is committed already
    end if;
    if r.status not in ('queued', 'running') then
        perform jobtail__refuse(r, 'closed');
    end if;
    if v_first <> r.last_seq + 1 or v_max - v_first + 1 <> v_count then
        perform jobtail__refuse(r, 'gap', r.last_seq + 1,
                                case when v_first <> r.last_seq + 1 then v_first else v_max end);
    end if;
    update runs set last_seq = v_max where run_id = r.run_id;
    perform pg_notify('jobtail', r.run_id);
    return v_max;
end
$$;

drop function if exists jobtail_append(text, jsonb);
create or replace function jobtail_append(p_run_id text, p_lines jsonb, p_epoch bigint default null)
returns bigint language plpgsql as $$
declare
    r runs;
begin
    -- the row lock serializes a run's writers, as the protocol requires per producer
    select * into r from runs where run_id = p_run_id for update;
    if not found then
        raise exception 'jobtail: cannot append to unknown run %', p_run_id
            using errcode = 'PT404';
    end if;
    return jobtail__write(r, p_lines, p_epoch);
end
$$;

-- Claim a run: queued -> running with a new epoch; with p_takeover_before, also a running run
-- silent since before that bound (its old writer is fenced). A caller that passes p_claim (its
-- own timestamp) gets the run again on retry, so a lost reply does not lose the claim.
create or replace function jobtail_claim_run(
    p_run_id text, p_claim timestamptz default null, p_takeover_before timestamptz default null
) returns setof runs language plpgsql as $$
declare
    v_at timestamptz := coalesce(p_claim, clock_timestamp());
    r runs;
begin
    update runs set status = 'running', started_at = v_at, heartbeat_at = v_at, epoch = epoch + 1
     where run_id = p_run_id
       and (status = 'queued'
            or (p_takeover_before is not null and status = 'running'
                and coalesce(heartbeat_at, created_at) < p_takeover_before))
    returning * into r;
    if found then
        perform pg_notify('jobtail', p_run_id);
        return next r;
        return;
    end if;
    if p_claim is not null then
        return query select * from runs
                      where run_id = p_run_id and status = 'running' and started_at = p_claim;
    end if;
end
$$;

create or replace function jobtail_start_run(p_run_id text, p_claim timestamptz default null)
returns boolean language sql as $$
    select exists (select 1 from jobtail_claim_run(p_run_id, p_claim))
$$;

drop function if exists jobtail_heartbeat(text);
create or replace function jobtail_heartbeat(p_run_id text, p_epoch bigint default null)
returns boolean language plpgsql as $$
declare
    r runs;
begin
    update runs set heartbeat_at = clock_timestamp()
     where run_id = p_run_id and status = 'running' and (p_epoch is null or epoch = p_epoch);
    if found then
        return true;
    end if;
    if p_epoch is null then
        return false;
    end if;
    select * into r from runs where run_id = p_run_id;
    if not found then
        return false;
    end if;
    perform jobtail__refuse(r, case when r.epoch <> p_epoch then 'stale_epoch' else 'closed' end);
    return false;
end
$$;

-- The run's end: append p_lines and set the final status in one transaction. With
-- p_stale_before, only a run whose last sign of life is older than that bound is closed, and its
-- epoch is bumped (the janitor's compare-and-close); otherwise nothing is written (false). A
-- finished run stays as it is: false for a retry that adds no line, PT409 for new lines.
drop function if exists jobtail_finish_run(text, text, text);
create or replace function jobtail_finish_run(
    p_run_id text, p_status text, p_error text default null, p_lines jsonb default null,
    p_epoch bigint default null, p_stale_before timestamptz default null
) returns boolean language plpgsql as $$
declare
    r runs;
begin
    if p_status is null or p_status not in ('succeeded', 'failed') then
        raise exception 'jobtail: % is not a final status', p_status using errcode = '22023';
    end if;
    select * into r from runs where run_id = p_run_id for update;
    if not found then
        return false;
    end if;
    if p_stale_before is not null
       and (r.status not in ('queued', 'running')
            or coalesce(r.heartbeat_at, r.created_at) >= p_stale_before) then
        return false;
    end if;
    perform jobtail__write(r, p_lines, p_epoch);
    if r.status not in ('queued', 'running') then
        return false;
    end if;
    update runs set status = p_status, finished_at = clock_timestamp(), error = p_error,
                    epoch = case when p_epoch is null then epoch + 1 else epoch end
     where run_id = p_run_id;
    perform pg_notify('jobtail', p_run_id);
    return true;
end
$$;

-- Running runs silent since before p_heartbeat_before and queued runs created before
-- p_queued_before (default: the same bound), oldest first: the janitor's work list.
create or replace function jobtail_stale_runs(
    p_heartbeat_before timestamptz, p_queued_before timestamptz default null,
    p_limit integer default 1000
) returns setof runs language sql stable as $$
    select * from runs
     where (status = 'running' and coalesce(heartbeat_at, created_at) < p_heartbeat_before)
        or (status = 'queued' and created_at < coalesce(p_queued_before, p_heartbeat_before))
     order by created_at
     limit p_limit
$$;

-- the new functions get 0003's privileges: nothing for PUBLIC or Supabase's client roles
do $$
declare
    v_fn regprocedure;
    v_service boolean := exists (select 1 from pg_roles where rolname = 'service_role');
begin
    for v_fn in
        select p.oid::regprocedure
          from pg_proc p
         where p.proname like 'jobtail\_%' and p.pronamespace = current_schema()::regnamespace
    loop
        execute format('revoke all on function %s from public, anon, authenticated', v_fn);
        if v_service then
            execute format('grant execute on function %s to service_role', v_fn);
        end if;
    end loop;
end
$$;
