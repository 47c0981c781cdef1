-- jobtail: an expired stream that forks still read is soft-deleted, as a DELETE would, and
-- answers 410 Gone from the request that finds it expired on (PROTOCOL.md §4.2: a soft-deleted
-- stream returns 410 for every operation on its URL). Before this, jobtail_stream__row of
-- 0007_stream_functions.sql soft-deleted it and still read it as absent, so the first request
-- got 404 and every later one 410 (and a read-only transaction, PostgREST's GET, 404 each
-- time). An expired stream without forks still reads as absent (404) and is removed. The same
-- rule as shared/jobtail/streams/sql.py (SQLite's). Idempotent.

create or replace function jobtail_stream__row(p_path text, p_lock boolean) returns streams
language plpgsql as $$
declare
    s streams;
    v_now double precision := jobtail_stream__now();
begin
    if p_lock then
        select * into s from streams where path = p_path for update;
    else
        select * into s from streams where path = p_path;
    end if;
    if s.stream_id is null then
        return s;
    end if;
    if s.deleted = 0 and ((s.expires_at is not null and v_now >= s.expires_at)
                          or (s.ttl is not null and v_now >= s.touched_at + s.ttl)) then
        if not jobtail_stream__read_only() then
            perform jobtail_stream__remove(s);
        end if;
        if s.forks = 0 then
            return null;
        end if;
        s.deleted := 1;  -- kept for its forks: gone, not absent
    end if;
    return s;
end
$$;
