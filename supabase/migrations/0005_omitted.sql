-- jobtail: a visible truncation policy. Past its per-run line cap a writer keeps the head and
-- the tail of the log and drops the middle; the run records how many lines it dropped
-- (runs.omitted, set with the run's end), so the API can say so. Idempotent.

alter table runs add column if not exists omitted bigint not null default 0;

drop function if exists jobtail_finish_run(text, text, text, jsonb, bigint, timestamptz);
create or replace function jobtail_finish_run(
    p_run_id text, p_status text, p_error text default null, p_lines jsonb default null,
    p_epoch bigint default null, p_stale_before timestamptz default null,
    p_omitted bigint default 0
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
                    epoch = case when p_epoch is null then epoch + 1 else epoch end,
                    omitted = coalesce(p_omitted, 0)
     where run_id = p_run_id;
    perform pg_notify('jobtail', p_run_id);
    return true;
end
$$;

-- the new signature gets 0003's privileges: nothing for PUBLIC or Supabase's client roles
do $$
declare
    v_service boolean := exists (select 1 from pg_roles where rolname = 'service_role');
    v_fn regprocedure :=
        'jobtail_finish_run(text, text, text, jsonb, bigint, timestamptz, bigint)'::regprocedure;
begin
    execute format('revoke all on function %s from public, anon, authenticated', v_fn);
    if v_service then
        execute format('grant execute on function %s to service_role', v_fn);
    end if;
end
$$;
