-- jobtail: a claim's first heartbeat is the database's clock, as every later heartbeat is.
-- 0004 stamped it with p_claim, the claiming worker's own clock (the key a retried claim finds
-- its run by): a worker whose clock ran behind the database's by more than stale_after had its
-- fresh claim judged stale by the janitor (which judges by the database's clock, 0013) until
-- its first heartbeat. started_at stays p_claim, so a retry still finds its claim. Idempotent.

create or replace function jobtail_claim_run(
    p_run_id text, p_claim timestamptz default null, p_takeover_before timestamptz default null
) returns setof runs language plpgsql as $$
declare
    v_at timestamptz := coalesce(p_claim, clock_timestamp());
    r runs;
begin
    update runs set status = 'running', started_at = v_at, heartbeat_at = clock_timestamp(),
                    epoch = epoch + 1
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

-- as 0003/0004: no EXECUTE for PUBLIC or the client roles; the service role keeps its grant
do $$
declare
    v_service boolean := exists (select 1 from pg_roles where rolname = 'service_role');
    v_fn regprocedure := 'jobtail_claim_run(text, timestamptz, timestamptz)'::regprocedure;
begin
    execute format('revoke all on function %s from public, anon, authenticated', v_fn);
    if v_service then
        execute format('grant execute on function %s to service_role', v_fn);
    end if;
end
$$;
