-- jobtail: only the server writes or reads. Row-level security is on with no policies, table
-- privileges and function EXECUTE are revoked from PUBLIC and Supabase's client roles (anon,
-- authenticated), and granted to service_role where it exists. The owner (direct PostgreSQL)
-- and service_role (BYPASSRLS, Supabase) keep access. Idempotent.

-- Plain PostgreSQL lacks Supabase's roles: create them (no login) so the revokes below apply.
do $$
declare
    v_role text;
begin
    foreach v_role in array array['anon', 'authenticated'] loop
        if not exists (select 1 from pg_roles where rolname = v_role) then
            begin
                execute format('create role %I nologin noinherit', v_role);
            exception when duplicate_object then
                null;  -- created concurrently by another database's migration
            end;
        end if;
    end loop;
end
$$;

alter table runs enable row level security;
alter table runs_logs enable row level security;

revoke all on table runs, runs_logs from public, anon, authenticated;
revoke all on sequence runs_logs_id_seq from public, anon, authenticated;

-- Every jobtail_* function, whatever its signature, so later migrations stay covered.
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
    if v_service then
        grant select, insert, update, delete on table runs, runs_logs to service_role;
        grant usage, select on sequence runs_logs_id_seq to service_role;
    end if;
end
$$;
