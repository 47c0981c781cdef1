-- jobtail: the janitor's restart of the heartbeat clocks after a store outage, a page of running
-- runs at a time keyed by run_id, each touched with the database's clock. Before this the
-- janitor paged with jobtail_stale_runs(its own clock), so a database clock behind the
-- janitor's kept the first page "stale" after its heartbeat and the restart ended there: the
-- runs past it kept their stale clocks and were failed. Idempotent.

create index if not exists runs_running on runs (run_id) where status = 'running';

-- The page: up to p_limit running runs after p_after, in run_id order (the next call's p_after
-- is the last one). Each still running when its row is locked gets heartbeat_at = the clock.
create or replace function jobtail_restart_heartbeats(
    p_after text default '',
    p_limit integer default 1000
) returns setof text language sql as $$
    with page as (
        select r.run_id from runs r
         where r.status = 'running' and r.run_id > coalesce(p_after, '')
         order by r.run_id
         limit greatest(coalesce(p_limit, 0), 0)
    ), beaten as (
        update runs r set heartbeat_at = clock_timestamp()
          from page
         where r.run_id = page.run_id and r.status = 'running'
    )
    select page.run_id from page order by page.run_id
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
         where p.proname = 'jobtail_restart_heartbeats'
           and p.pronamespace = current_schema()::regnamespace
    loop
        execute format('revoke all on function %s from public, anon, authenticated', v_fn);
        if v_service then
            execute format('grant execute on function %s to service_role', v_fn);
        end if;
    end loop;
end
$$;
