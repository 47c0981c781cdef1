-- jobtail: an expired stream's rows are really removed. Before this, jobtail_stream__row
-- (0007_stream_functions.sql, 0010_stream_expiry.sql) removed (or, with forks, soft-deleted) an
-- expired stream inside the call that met it, and that call then refused (404, 410): the
-- refusal rolled the removal back, so the rows and their data stayed forever. Now a call that
-- meets an expired stream only refuses, with SQLSTATE PT410 and a detail naming it
-- ({"stream_error": "not_found" or "gone", "expired": path}); the caller
-- (shared/jobtail/streams/functions.py) then calls jobtail_stream_expire, its own transaction,
-- which commits the removal, and calls again (404, or 410 while forks still read it). The
-- same steps as shared/jobtail/streams/sql.py (SQLite's). Idempotent.

create or replace function jobtail_stream__expired(s streams) returns boolean
language sql volatile as $$
    select s.deleted = 0 and ((s.expires_at is not null and jobtail_stream__now() >= s.expires_at)
                              or (s.ttl is not null and jobtail_stream__now() >= s.touched_at + s.ttl))
$$;

-- The stream at a path, or a row of nulls; an expired one refuses (PT410, read-only
-- transactions included: jobtail_stream_expire removes it).
create or replace function jobtail_stream__row(p_path text, p_lock boolean) returns streams
language plpgsql as $$
declare
    s streams;
begin
    if p_lock then
        select * into s from streams where path = p_path for update;
    else
        select * into s from streams where path = p_path;
    end if;
    if s.stream_id is not null and jobtail_stream__expired(s) then
        -- PT410, not PT404: jobtail_stream_create turns a fork source's PT404 into a conflict
        raise exception using message = format('stream %L expired', p_path), errcode = 'PT410',
            detail = jsonb_build_object(
                'stream_error', case when s.forks = 0 then 'not_found' else 'gone' end,
                'expired', p_path)::text;
    end if;
    return s;
end
$$;

-- Delete a stream; with live forks only mark it deleted. Cascades up a fork chain: a source
-- goes with its last fork once it was deleted or has expired.
create or replace function jobtail_stream__remove(s streams) returns void
language plpgsql as $$
declare
    v_source streams;
begin
    if s.forks > 0 then
        update streams set deleted = 1 where stream_id = s.stream_id and deleted = 0;
        return;
    end if;
    delete from streams where stream_id = s.stream_id;
    if not found then
        return;  -- removed already
    end if;
    delete from streams_chunks where stream_id = s.stream_id;
    delete from streams_producers where stream_id = s.stream_id;
    if s.fork_of is not null then
        update streams set forks = forks - 1 where stream_id = s.fork_of
        returning * into v_source;
        if v_source.forks = 0 and (v_source.deleted = 1 or jobtail_stream__expired(v_source)) then
            perform jobtail_stream__remove(v_source);
        end if;
    end if;
end
$$;

-- Remove the stream at a path if it is still expired (locked: a concurrent remover, or a fork
-- being created from it, comes before or after); one that forks read is soft-deleted (410 from
-- then on) and goes with its last fork. Returns whether it did anything.
create or replace function jobtail_stream_expire(p_path text) returns boolean
language plpgsql as $$
declare
    s streams;
begin
    select * into s from streams where path = p_path for update;
    if s.stream_id is null or not jobtail_stream__expired(s) then
        return false;
    end if;
    perform jobtail_stream__remove(s);
    perform jobtail_stream__notify(p_path);
    return true;
end
$$;

-- as 0007: no EXECUTE for PUBLIC or the client roles; the service role gets it
do $$
declare
    v_fn regprocedure;
    v_service boolean := exists (select 1 from pg_roles where rolname = 'service_role');
begin
    for v_fn in
        select p.oid::regprocedure
          from pg_proc p
         where p.proname like 'jobtail\_stream%' and p.pronamespace = current_schema()::regnamespace
    loop
        execute format('revoke all on function %s from public, anon, authenticated', v_fn);
        if v_service then
            execute format('grant execute on function %s to service_role', v_fn);
        end if;
    end loop;
end
$$;
