-- jobtail: the janitor sweeps expired streams. An expired stream was removed only when a
-- request met it (0011_stream_expiry_commit.sql): one nobody asked for again kept its row, data
-- and producer state for good. jobtail_stream_sweep removes one batch of them, in keyset order
-- (stream_id after p_after), judged by the database's clock as every other expiry; the caller
-- (shared/jobtail/streams/functions.py) calls it again from the last id it returns, each batch
-- its own short transaction. A stream that forks still read is soft-deleted (410 from then on)
-- and goes with its last fork, as in jobtail_stream_expire. The same steps as shared/jobtail/streams/sql.py
-- (SQLite's). Idempotent.

-- The next p_limit streams by id after p_after that are expired (the keyset: "seen"); of those,
-- each one no request holds is locked, checked again and removed or soft-deleted ("expired");
-- one a request holds is left to it, or to the next sweep. A candidate an earlier one took
-- along (a source with its last fork) counts as removed. Returns {"expired", "seen", "last":
-- the last seen id or null}: a batch that saw fewer than p_limit was the last.
create or replace function jobtail_stream_sweep(p_after text default '', p_limit integer default 100)
returns jsonb language plpgsql as $$
declare
    v_now double precision := jobtail_stream__now();
    v_seen text[];
    v_locked text[];
    v_id text;
    s streams;
begin
    select coalesce(array_agg(stream_id order by stream_id), '{}') into v_seen
      from (select stream_id from streams
             where stream_id > p_after and deleted = 0
               and ((expires_at is not null and v_now >= expires_at)
                    or (ttl is not null and v_now >= touched_at + ttl))
             order by stream_id
             limit greatest(p_limit, 1)) candidates;
    -- locked in id order, and checked again once locked (a read may have just slid a TTL)
    select coalesce(array_agg(stream_id order by stream_id), '{}') into v_locked
      from (select stream_id from streams
             where stream_id = any(v_seen) and deleted = 0
               and ((expires_at is not null and v_now >= expires_at)
                    or (ttl is not null and v_now >= touched_at + ttl))
             order by stream_id
             for update skip locked) held;
    foreach v_id in array v_locked loop
        select * into s from streams where stream_id = v_id;
        if s.stream_id is not null and s.deleted = 0 then
            perform jobtail_stream__remove(s);
            perform jobtail_stream__notify(s.path);
        end if;
    end loop;
    return jsonb_build_object('expired', cardinality(v_locked), 'seen', cardinality(v_seen),
                              'last', v_seen[cardinality(v_seen)]);
end
$$;

-- as 0007: no EXECUTE for PUBLIC or the client roles; the service role gets it
do $$
declare
    v_service boolean := exists (select 1 from pg_roles where rolname = 'service_role');
begin
    revoke all on function jobtail_stream_sweep(text, integer) from public, anon, authenticated;
    if v_service then
        grant execute on function jobtail_stream_sweep(text, integer) to service_role;
    end if;
end
$$;
