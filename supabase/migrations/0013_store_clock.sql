-- jobtail: the database's clock for the janitor. Heartbeats and creations are stamped with it
-- (clock_timestamp()), so the janitor takes its staleness bounds from it too
-- (LogStore.clock): before, it judged them against its own machine's clock, and one running an
-- hour ahead of the database's failed every live run, one behind failed dead runs an hour late.
-- Idempotent.

create or replace function jobtail_clock()
returns timestamptz language sql volatile as $$
    select clock_timestamp()
$$;

-- as 0003/0004: no EXECUTE for PUBLIC or the client roles; the service role gets it
do $$
declare
    v_service boolean := exists (select 1 from pg_roles where rolname = 'service_role');
begin
    revoke all on function jobtail_clock() from public, anon, authenticated;
    if v_service then
        grant execute on function jobtail_clock() to service_role;
    end if;
end
$$;
