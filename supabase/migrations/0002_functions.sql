-- jobtail: every write is one SQL function call, so each is atomic and one round trip, and the
-- same SQL serves psycopg (PostgresStore) and PostgREST rpc (SupabaseStore). Idempotent.
-- Writes pg_notify('jobtail', run_id) on appends and status changes; NOTIFY is delivered at
-- commit, so a woken listener always finds the rows. Parameters carry a p_ prefix: it keeps
-- them apart from column names and from PostgREST's reserved query parameters (limit, order).

-- Create a queued run. Returns the new run; if the key already has a queued or running run,
-- returns that run instead (the caller compares run_id). Calling again with the same run_id
-- (a retry after a lost reply) returns the run it created.
create or replace function jobtail_create_run(
    p_run_id text, p_upload_id text, p_service_name text
) returns runs language plpgsql as $$
declare
    r runs;
begin
    loop
        begin
            insert into runs (run_id, upload_id, service_name, status, created_at)
            values (p_run_id, p_upload_id, p_service_name, 'queued', clock_timestamp())
            returning * into r;
            perform pg_notify('jobtail', p_run_id);
            return r;
        exception when unique_violation then
            select * into r from runs where run_id = p_run_id;
            if found then
                if r.upload_id is distinct from p_upload_id
                   or r.service_name is distinct from p_service_name then
                    raise;
                end if;
                return r;
            end if;
            select * into r from runs
             where upload_id = p_upload_id and service_name = p_service_name
               and status in ('queued', 'running');
            if found then
                return r;
            end if;
            -- the active run finished in between: try again
        end;
    end loop;
end
$$;

create or replace function jobtail_get_run(p_run_id text)
returns setof runs language sql stable as $$
    select * from runs where run_id = p_run_id
$$;

-- Newest first; a null filter matches every value.
create or replace function jobtail_list_runs(
    p_upload_id text default null, p_service_name text default null, p_limit integer default 100
) returns setof runs language sql stable as $$
    select * from runs
     where (p_upload_id is null or upload_id = p_upload_id)
       and (p_service_name is null or service_name = p_service_name)
     order by created_at desc, run_id desc
     limit p_limit
$$;

-- Claim a queued run (queued -> running); true for the one caller that claimed it. A caller
-- that passes p_claim (its own timestamp) gets true again on retry, so a lost reply does not
-- lose the claim.
create or replace function jobtail_start_run(p_run_id text, p_claim timestamptz default null)
returns boolean language plpgsql as $$
declare
    v_at timestamptz := coalesce(p_claim, clock_timestamp());
begin
    update runs set status = 'running', started_at = v_at, heartbeat_at = v_at
     where run_id = p_run_id and status = 'queued';
    if found then
        perform pg_notify('jobtail', p_run_id);
        return true;
    end if;
    return p_claim is not null and exists (
        select 1 from runs where run_id = p_run_id and status = 'running' and started_at = p_claim
    );
end
$$;

create or replace function jobtail_heartbeat(p_run_id text)
returns boolean language sql as $$
    with beat as (
        update runs set heartbeat_at = clock_timestamp()
         where run_id = p_run_id and status = 'running'
        returning 1
    )
    select exists (select 1 from beat)
$$;

-- Mark an active run succeeded or failed; a finished run is left as it is (returns false).
create or replace function jobtail_finish_run(
    p_run_id text, p_status text, p_error text default null
) returns boolean language plpgsql as $$
begin
    if p_status is null or p_status not in ('succeeded', 'failed') then
        raise exception 'jobtail: % is not a final status', p_status using errcode = '22023';
    end if;
    update runs set status = p_status, finished_at = clock_timestamp(), error = p_error
     where run_id = p_run_id and status in ('queued', 'running');
    if found then
        perform pg_notify('jobtail', p_run_id);
        return true;
    end if;
    return false;
end
$$;

-- Commit a batch of lines, a jsonb array of {seq, timestamp, log_level, level_no, message,
-- fields}, idempotently on (run_id, seq), and advance last_seq = greatest(last_seq, max(seq))
-- in the same statement. Returns the run's last_seq; an unknown run raises PT404 (HTTP 404
-- through PostgREST).
create or replace function jobtail_append(p_run_id text, p_lines jsonb)
returns bigint language plpgsql as $$
declare
    v_last bigint;
begin
    with run as (
        select upload_id, service_name from runs where run_id = p_run_id
    ), lines as (
        select l.*
          from jsonb_to_recordset(coalesce(p_lines, '[]'::jsonb)) as l(
              seq bigint, "timestamp" timestamptz, log_level text, level_no integer,
              message text, fields jsonb)
    ), inserted as (
        insert into runs_logs (run_id, seq, upload_id, service_name, "timestamp", log_level,
                               level_no, message, fields)
        select p_run_id, l.seq, run.upload_id, run.service_name,
               coalesce(l."timestamp", clock_timestamp()), coalesce(l.log_level, 'INFO'),
               coalesce(l.level_no, case upper(l.log_level)
                   when 'DEBUG' then 10 when 'INFO' then 20 when 'WARNING' then 30
                   when 'WARN' then 30 when 'ERROR' then 40 when 'CRITICAL' then 50
                   when 'FATAL' then 50 else 20 end),
               coalesce(l.message, ''), nullif(l.fields, 'null'::jsonb)
          from lines l cross join run
         order by l.seq
        on conflict (run_id, seq) do nothing
    )
    update runs
       set last_seq = greatest(runs.last_seq, (select coalesce(max(seq), 0) from lines))
     where run_id = p_run_id
    returning last_seq into v_last;
    if v_last is null then
        raise exception 'jobtail: cannot append to unknown run %', p_run_id
            using errcode = 'PT404';
    end if;
    perform pg_notify('jobtail', p_run_id);
    return v_last;
end
$$;

-- Lines with p_after < seq (< p_before), in seq order, level_no >= p_min_level_no.
create or replace function jobtail_read(
    p_run_id text,
    p_after bigint default 0,
    p_limit integer default 1000,
    p_min_level_no integer default 0,
    p_before bigint default null
) returns table (
    seq bigint, "timestamp" timestamptz, log_level text, message text, fields jsonb
) language sql stable as $$
    select l.seq, l."timestamp", l.log_level, l.message, l.fields
      from runs_logs l
     where l.run_id = p_run_id
       and l.seq > coalesce(p_after, 0)
       and (p_before is null or l.seq < p_before)
       and l.level_no >= coalesce(p_min_level_no, 0)
     order by l.seq
     limit p_limit
$$;

-- Fail running runs whose heartbeat is older than p_heartbeat_before, and queued runs created
-- before p_queued_before (default: the same bound; a queue backlog may deserve longer);
-- returns their ids.
drop function if exists jobtail_fail_stale(timestamptz, text);
create or replace function jobtail_fail_stale(
    p_heartbeat_before timestamptz, p_error text, p_queued_before timestamptz default null)
returns setof text language plpgsql as $$
declare
    v_run_id text;
begin
    for v_run_id in
        update runs set status = 'failed', finished_at = clock_timestamp(), error = p_error
         where (status = 'running' and coalesce(heartbeat_at, created_at) < p_heartbeat_before)
            or (status = 'queued'
                and created_at < coalesce(p_queued_before, p_heartbeat_before))
        returning run_id
    loop
        perform pg_notify('jobtail', v_run_id);
        return next v_run_id;
    end loop;
end
$$;

-- Delete finished runs that ended before the bound, and their lines; count runs.
create or replace function jobtail_purge(p_finished_before timestamptz)
returns integer language sql as $$
    -- runs_logs has no foreign key (its per-row check cost a third of append throughput):
    -- a run's lines go in the same statement as the run
    with gone as (
        delete from runs
         where status in ('succeeded', 'failed') and finished_at < p_finished_before
        returning run_id
    ), lines as (
        delete from runs_logs where run_id in (select run_id from gone)
    )
    select count(*)::integer from gone
$$;
