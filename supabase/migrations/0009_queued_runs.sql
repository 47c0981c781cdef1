-- jobtail: queued runs a page at a time, oldest first, keyed by (created_at, run_id), for the
-- dispatcher's re-send of runs whose queue message was lost (jobtail.jobs.dispatch). Before
-- this, Supabase saw only the oldest page (through jobtail_stale_runs); PostgreSQL and Supabase
-- now call the same function. Idempotent.

create index if not exists runs_queued on runs (created_at, run_id) where status = 'queued';

create or replace function jobtail_queued_runs(
    p_after_created timestamptz default null,
    p_after_run_id text default '',
    p_limit integer default 1000
) returns setof runs language sql stable as $$
    select * from runs
     where status = 'queued'
       and (p_after_created is null
            or (created_at, run_id) > (p_after_created, coalesce(p_after_run_id, '')))
     order by created_at, run_id
     limit greatest(coalesce(p_limit, 0), 0)
$$;

-- as 0003/0004: no EXECUTE for PUBLIC or the client roles; the service role gets it
do $$
declare
    v_fn regprocedure;
    v_service boolean := exists (select 1 from pg_roles where rolname = 'service_role');
begin
    for v_fn in
        select p.oid::regprocedure
          from pg_proc p
         where p.proname = 'jobtail_queued_runs' and p.pronamespace = current_schema()::regnamespace
    loop
        execute format('revoke all on function %s from public, anon, authenticated', v_fn);
        if v_service then
            execute format('grant execute on function %s to service_role', v_fn);
        end if;
    end loop;
end
$$;
