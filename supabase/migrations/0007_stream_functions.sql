-- jobtail: Durable Streams operations as SQL functions over 0004_streams.sql's tables, one
-- transaction per call, so PostgREST (Supabase) can run them by rpc and PostgreSQL
-- (shared/jobtail/streams/functions.py) calls the same ones. Every write starts with
-- SELECT ... FOR UPDATE on the stream's row: appends to a stream, so per (stream, producer), are
-- serialized, and producer state, data, tail and closed flag commit together. The logic is that
-- of shared/jobtail/streams/sql.py (SQLite's), step for step; tests/streams/test_store.py and the
-- conformance suite run both. Refusals raise SQLSTATE PT<http status> with a JSON detail
-- {"stream_error": kind, ...} that the Python side turns back into the stream errors. Reads skip
-- the clean-up of expired streams and the TTL touch inside a read-only transaction (PostgREST's
-- GET). Offsets and tails are units: bytes, or messages for application/json, whose data rows
-- hold one compact JSON text per line. Idempotent.

create or replace function jobtail_stream__now() returns double precision
language sql volatile as $$ select extract(epoch from clock_timestamp())::double precision $$;

create or replace function jobtail_stream__media(p_type text) returns text
language sql immutable as $$ select lower(btrim(split_part(p_type, ';', 1), E' \t\r\n')) $$;

create or replace function jobtail_stream__is_json(p_type text) returns boolean
language sql immutable as $$ select jobtail_stream__media(p_type) = 'application/json' $$;

create or replace function jobtail_stream__read_only() returns boolean
language sql stable as $$ select current_setting('transaction_read_only') = 'on' $$;

-- kinds: invalid (400), not_found (404), gone (410), conflict (409), closed (409,
-- next_offset), stale_epoch (403, epoch), gap (409, expected, received)
create or replace function jobtail_stream__refuse(p_kind text, p_message text,
                                                  p_detail jsonb default '{}')
returns void language plpgsql as $$
begin
    raise exception using message = p_message,
        errcode = case p_kind when 'invalid' then 'PT400' when 'not_found' then 'PT404'
                              when 'gone' then 'PT410' when 'stale_epoch' then 'PT403'
                              else 'PT409' end,
        detail = (p_detail || jsonb_build_object('stream_error', p_kind))::text;
end
$$;

create or replace function jobtail_stream__meta(s streams) returns jsonb
language sql stable as $$
    select jsonb_build_object(
        'stream_id', s.stream_id, 'content_type', s.content_type, 'tail', s.tail,
        'closed', s.closed = 1, 'ttl', s.ttl,
        'expires_at', s.expires_at::text)  -- text: every digit (jsonb numbers keep 15)
$$;

-- Wake other server processes' waiters (PostgresStreams LISTENs). jobtail.notify = 'off' (as for
-- runs, 0006_notify.sql) spares the commit-time lock of a notifying transaction where nobody
-- listens (Supabase through PostgREST polls).
create or replace function jobtail_stream__notify(p_path text) returns void
language plpgsql as $$
begin
    if coalesce(current_setting('jobtail.notify', true), '') <> 'off' then
        perform pg_notify('jobtail_streams', p_path);
    end if;
end
$$;

create or replace function jobtail_stream__offset(p_units bigint) returns text
language sql immutable as $$ select lpad(p_units::text, 16, '0') || '_' || repeat('0', 16) $$;

-- Delete a stream; with live forks only mark it deleted. Cascades up a fork chain.
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
        return;  -- removed already (two readers found it expired)
    end if;
    delete from streams_chunks where stream_id = s.stream_id;
    delete from streams_producers where stream_id = s.stream_id;
    if s.fork_of is not null then
        update streams set forks = forks - 1 where stream_id = s.fork_of
        returning * into v_source;
        if v_source.deleted = 1 and v_source.forks = 0 then
            perform jobtail_stream__remove(v_source);
        end if;
    end if;
end
$$;

-- The stream at a path, or a row of nulls; an expired one reads as absent (and is removed on
-- the way unless the transaction is read-only).
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
        return null;
    end if;
    return s;
end
$$;

create or replace function jobtail_stream__open(p_path text, p_lock boolean) returns streams
language plpgsql as $$
declare
    s streams := jobtail_stream__row(p_path, p_lock);
begin
    if s.stream_id is null then
        perform jobtail_stream__refuse('not_found', format('no stream at %L', p_path));
    end if;
    if s.deleted = 1 then
        perform jobtail_stream__refuse('gone', format('stream %L was deleted', p_path));
    end if;
    return s;
end
$$;

-- Data in [p_start, p_end) up to about p_budget bytes, stitched across forks; rows cut to the
-- range by bytes, or by messages (lines) for JSON streams.
create or replace function jobtail_stream__pieces(p_id text, p_start bigint, p_end bigint,
                                                  p_budget bigint, p_limit integer)
returns table (o_start bigint, o_stop bigint, o_data bytea) language plpgsql stable as $$
declare
    s streams;
    v_json boolean;
    v_start bigint := p_start;
    v_edge bigint;
    v_used bigint := 0;
    v_count integer := 0;
    v_last bigint;
    c record;
    v_lo bigint;
    v_hi bigint;
begin
    select * into s from streams where stream_id = p_id;
    v_json := jobtail_stream__is_json(s.content_type);
    if s.fork_of is not null and s.fork_offset is not null and v_start < s.fork_offset then
        v_edge := least(p_end, s.fork_offset);
        for c in select * from jobtail_stream__pieces(s.fork_of, v_start, v_edge, p_budget, p_limit)
        loop
            o_start := c.o_start; o_stop := c.o_stop; o_data := c.o_data;
            return next;
            v_used := v_used + length(c.o_data);
            v_count := v_count + 1;
            v_last := c.o_stop;
        end loop;
        if v_last is not null and v_last < v_edge then
            return;  -- the budget ran out inside the source's range
        end if;
        v_start := s.fork_offset;
    end if;
    if v_start >= p_end or (v_count > 0 and v_used >= p_budget) then
        return;
    end if;
    for c in select k.start, k.stop, k.data from streams_chunks k
              where k.stream_id = p_id and k.stop > v_start and k.start < p_end
              order by k.start limit p_limit
    loop
        v_lo := greatest(c.start, v_start);
        v_hi := least(c.stop, p_end);
        o_data := c.data;
        if v_lo <> c.start or v_hi <> c.stop then
            if v_json then
                o_data := convert_to(array_to_string(
                    (string_to_array(convert_from(c.data, 'UTF8'), E'\n'))
                        [v_lo - c.start + 1 : v_hi - c.start], E'\n'), 'UTF8');
            else
                o_data := substring(c.data from (v_lo - c.start + 1)::integer
                                    for (v_hi - v_lo)::integer);
            end if;
        end if;
        o_start := v_lo; o_stop := v_hi;
        return next;
        v_used := v_used + length(o_data);
        exit when v_used >= p_budget;
    end loop;
end
$$;

-- A body as stored data and its units. JSON streams take the messages the caller parsed
-- (p_messages: compact JSON texts joined by newlines; p_count of them; or p_json_error), other
-- streams the bytes.
create or replace function jobtail_stream__data(p_type text, p_body bytea, p_messages text,
                                                p_count bigint, p_json_error text,
                                                out o_data bytea, out o_units bigint)
language plpgsql as $$
begin
    o_units := 0;
    if jobtail_stream__is_json(p_type) then
        if p_json_error is not null then
            perform jobtail_stream__refuse('invalid', p_json_error);
        end if;
        if p_messages is null and coalesce(length(p_body), 0) > 0 then
            perform jobtail_stream__refuse('invalid', 'a JSON stream''s body must be sent as messages');
        end if;
        if coalesce(p_count, 0) > 0 then
            o_data := convert_to(p_messages, 'UTF8');
            o_units := p_count;
        end if;
    elsif coalesce(length(p_body), 0) > 0 then
        o_data := p_body;
        o_units := length(p_body);
    end if;
end
$$;

-- What a create asks for, as a row (stream_id, content type, expiry, fork and tail filled): a
-- fork takes its source's content type, offset and, without an expiry of its own, its expiry.
create or replace function jobtail_stream__wanted(
    p_path text, p_content_type text, p_ttl bigint, p_expires_at double precision,
    p_fork_from text, p_fork_offset bigint, p_fork_sub_offset bigint
) returns streams language plpgsql as $$
declare
    w streams;
    src streams;
    v_anchor bigint;
    v_first record;
begin
    w.stream_id := substr(md5(gen_random_uuid()::text), 1, 16);
    w.path := p_path;
    w.content_type := coalesce(nullif(p_content_type, ''), 'application/octet-stream');
    w.ttl := p_ttl;
    w.expires_at := p_expires_at;
    w.touched_at := jobtail_stream__now();
    w.tail := 0;
    w.closed := 0;
    w.forks := 0;
    w.deleted := 0;
    if p_fork_from is null then
        return w;
    end if;
    src := jobtail_stream__row(p_fork_from, true);
    if src.stream_id is null then
        perform jobtail_stream__refuse('not_found',
                                       format('fork source %L does not exist', p_fork_from));
    end if;
    if src.deleted = 1 then
        perform jobtail_stream__refuse('conflict', format('fork source %L was deleted', p_fork_from));
    end if;
    if nullif(p_content_type, '') is not null
       and jobtail_stream__media(p_content_type) <> jobtail_stream__media(src.content_type) then
        perform jobtail_stream__refuse('conflict', 'a fork''s content type must match its source''s');
    end if;
    w.content_type := src.content_type;
    v_anchor := coalesce(p_fork_offset, src.tail);
    if v_anchor > src.tail then
        perform jobtail_stream__refuse('invalid',
                                       'Stream-Fork-Offset is beyond the source stream''s tail');
    end if;
    if coalesce(p_fork_sub_offset, 0) < 0 then
        perform jobtail_stream__refuse('invalid',
                                       'Stream-Fork-Sub-Offset must be a non-negative integer');
    end if;
    if coalesce(p_fork_sub_offset, 0) > 0 then  -- at most to the end of the unit at the anchor
        select * into v_first
          from jobtail_stream__pieces(src.stream_id, v_anchor, src.tail, 1, 1) limit 1;
        if v_first.o_stop is null or v_anchor + p_fork_sub_offset > v_first.o_stop then
            perform jobtail_stream__refuse('invalid',
                                           'Stream-Fork-Sub-Offset is past the next data boundary');
        end if;
    end if;
    w.fork_of := src.stream_id;
    w.fork_offset := v_anchor + coalesce(p_fork_sub_offset, 0);
    w.tail := w.fork_offset;
    if p_ttl is null and p_expires_at is null then
        w.ttl := src.ttl;
        w.expires_at := src.expires_at;
    end if;
    return w;
end
$$;

-- PUT: create a stream (or a fork), or confirm one with the same configuration (200), else 409.
-- Returns {"created": bool, "meta": {...}}.
create or replace function jobtail_stream_create(
    p_path text, p_content_type text default null, p_ttl bigint default null,
    p_expires_at double precision default null, p_closed boolean default false,
    p_body bytea default null, p_messages text default null, p_count bigint default null,
    p_json_error text default null, p_fork_from text default null,
    p_fork_offset bigint default null, p_fork_sub_offset bigint default 0
) returns jsonb language plpgsql as $$
declare
    s streams;
    w streams;
    v_data bytea;
    v_units bigint;
begin
    if p_ttl is not null and p_expires_at is not null then
        perform jobtail_stream__refuse('invalid', 'send Stream-TTL or Stream-Expires-At, not both');
    end if;
    loop
        s := jobtail_stream__row(p_path, true);
        if s.stream_id is not null then
            if s.deleted = 1 then
                perform jobtail_stream__refuse('conflict', format(
                    'stream %L was deleted; its path cannot be reused', p_path));
            end if;
            begin
                w := jobtail_stream__wanted(p_path, p_content_type, p_ttl, p_expires_at,
                                            p_fork_from, p_fork_offset, p_fork_sub_offset);
            exception when sqlstate 'PT404' then
                perform jobtail_stream__refuse('conflict', sqlerrm);
            end;
            if jobtail_stream__media(w.content_type) is distinct from
                   jobtail_stream__media(s.content_type)
               or w.ttl is distinct from s.ttl or w.expires_at is distinct from s.expires_at
               or coalesce(p_closed, false) <> (s.closed = 1)
               or w.fork_of is distinct from s.fork_of
               or (s.fork_of is not null and w.fork_offset is distinct from s.fork_offset) then
                perform jobtail_stream__refuse('conflict', format(
                    'stream %L exists with another configuration', p_path));
            end if;
            return jsonb_build_object('created', false, 'meta', jobtail_stream__meta(s));
        end if;
        w := jobtail_stream__wanted(p_path, p_content_type, p_ttl, p_expires_at,
                                    p_fork_from, p_fork_offset, p_fork_sub_offset);
        select d.o_data, d.o_units into v_data, v_units
          from jobtail_stream__data(w.content_type, p_body, p_messages, p_count, p_json_error) d;
        w.closed := case when coalesce(p_closed, false) then 1 else 0 end;
        insert into streams values (w.*) on conflict (path) do nothing;
        exit when found;  -- else another create of the path won: confirm it
    end loop;
    if v_units > 0 then
        insert into streams_chunks (stream_id, start, stop, data)
        values (w.stream_id, w.tail, w.tail + v_units, v_data);
        w.tail := w.tail + v_units;
        update streams set tail = w.tail where stream_id = w.stream_id;
    end if;
    if w.fork_of is not null then
        update streams set forks = forks + 1 where stream_id = w.fork_of;
    end if;
    perform jobtail_stream__notify(p_path);
    return jsonb_build_object('created', true, 'meta', jobtail_stream__meta(w));
end
$$;

-- POST: append and/or close, checking (in the protocol's order) closed, content type, the
-- producer (Kafka-style: stale epoch 403, a new epoch from seq 0, a retry is a duplicate, a gap
-- 409) and Stream-Seq, all under the stream's row lock. Returns {"meta", "duplicate",
-- "producer": {"id", "epoch", "seq"} or null}.
create or replace function jobtail_stream_append(
    p_path text, p_content_type text default null, p_close boolean default false,
    p_body bytea default null, p_messages text default null, p_count bigint default null,
    p_json_error text default null, p_producer_id text default null,
    p_epoch bigint default null, p_seq bigint default null, p_stream_seq text default null
) returns jsonb language plpgsql as $$
declare
    s streams := jobtail_stream__open(p_path, true);
    v_close boolean := coalesce(p_close, false);
    v_key text;
    v_has_body boolean := p_body is not null or p_messages is not null or p_json_error is not null;
    v_producer jsonb;
    v_state streams_producers;
    v_data bytea;
    v_units bigint;
begin
    if p_producer_id is not null then
        v_key := p_epoch || ':' || p_seq || ':' || p_producer_id;
        v_producer := jsonb_build_object('id', p_producer_id, 'epoch', p_epoch, 'seq', p_seq);
    end if;
    if s.closed = 1 then
        if (v_key is not null and s.closed_by = v_key) or (v_close and not v_has_body) then
            return jsonb_build_object('meta', jobtail_stream__meta(s), 'duplicate', true,
                                      'producer', v_producer);
        end if;
        perform jobtail_stream__refuse('closed', 'stream is closed: no further appends',
            jsonb_build_object('next_offset', jobtail_stream__offset(s.tail)));
    end if;
    if v_has_body and nullif(p_content_type, '') is not null
       and jobtail_stream__media(p_content_type) <> jobtail_stream__media(s.content_type) then
        perform jobtail_stream__refuse('conflict', format(
            'content type %L does not match the stream''s %L', p_content_type, s.content_type));
    end if;
    if p_producer_id is not null then
        select * into v_state from streams_producers
         where stream_id = s.stream_id and producer_id = p_producer_id;
        if v_state.stream_id is null then
            if p_seq <> 0 then
                perform jobtail_stream__refuse('gap', format(
                    'producer sequence gap: expected 0, received %s', p_seq),
                    jsonb_build_object('expected', 0, 'received', p_seq));
            end if;
        elsif p_epoch < v_state.epoch then
            perform jobtail_stream__refuse('stale_epoch', format(
                'producer epoch is stale: the current epoch is %s', v_state.epoch),
                jsonb_build_object('epoch', v_state.epoch));
        elsif p_epoch > v_state.epoch then
            if p_seq <> 0 then
                perform jobtail_stream__refuse('invalid',
                                               'a new producer epoch must start at Producer-Seq 0');
            end if;
        elsif p_seq <= v_state.seq then
            return jsonb_build_object('meta', jobtail_stream__meta(s), 'duplicate', true,
                'producer', jsonb_build_object('id', p_producer_id, 'epoch', v_state.epoch,
                                               'seq', v_state.seq));
        elsif p_seq > v_state.seq + 1 then
            perform jobtail_stream__refuse('gap', format(
                'producer sequence gap: expected %s, received %s', v_state.seq + 1, p_seq),
                jsonb_build_object('expected', v_state.seq + 1, 'received', p_seq));
        end if;
    end if;
    if p_stream_seq is not null then
        if s.stream_seq is not null and p_stream_seq collate "C" <= s.stream_seq collate "C" then
            perform jobtail_stream__refuse('conflict', format(
                'Stream-Seq %L is not above the last %L', p_stream_seq, s.stream_seq));
        end if;
        s.stream_seq := p_stream_seq;
    end if;
    if v_has_body then
        select d.o_data, d.o_units into v_data, v_units
          from jobtail_stream__data(s.content_type, p_body, p_messages, p_count, p_json_error) d;
        if v_units > 0 then
            insert into streams_chunks (stream_id, start, stop, data)
            values (s.stream_id, s.tail, s.tail + v_units, v_data);
            s.tail := s.tail + v_units;
        end if;
    end if;
    s.closed := case when v_close then 1 else 0 end;
    s.closed_by := case when v_close then v_key end;
    update streams set tail = s.tail, closed = s.closed, closed_by = s.closed_by,
                       stream_seq = s.stream_seq, touched_at = jobtail_stream__now()
     where stream_id = s.stream_id;
    if p_producer_id is not null then
        insert into streams_producers (stream_id, producer_id, epoch, seq)
        values (s.stream_id, p_producer_id, p_epoch, p_seq)
        on conflict (stream_id, producer_id) do update set epoch = excluded.epoch, seq = excluded.seq;
    end if;
    perform jobtail_stream__notify(p_path);
    return jsonb_build_object('meta', jobtail_stream__meta(s), 'duplicate', false,
                              'producer', v_producer);
end
$$;

-- DELETE: a stream with forks is soft-deleted (410 from then on) until they go.
create or replace function jobtail_stream_delete(p_path text) returns boolean
language plpgsql as $$
begin
    perform jobtail_stream__remove(jobtail_stream__open(p_path, true));
    perform jobtail_stream__notify(p_path);
    return true;
end
$$;

-- HEAD: metadata; does not reset a sliding TTL.
create or replace function jobtail_stream_head(p_path text) returns jsonb
language plpgsql as $$
begin
    return jobtail_stream__meta(jobtail_stream__open(p_path, false));
end
$$;

-- GET: data from p_offset (null: the tail) up to about p_budget bytes, as {"meta", "start",
-- "stop", "data"}: JSON streams' messages joined by newlines, other streams' bytes in base64.
-- A read resets a sliding TTL (not in a read-only transaction).
create or replace function jobtail_stream_read(p_path text, p_offset bigint default null,
                                               p_budget bigint default 1048576,
                                               p_limit integer default 5000)
returns jsonb language plpgsql as $$
declare
    s streams := jobtail_stream__open(p_path, false);
    v_start bigint := coalesce(p_offset, s.tail);
    v_stop bigint;
    v_data bytea;
    v_json boolean := jobtail_stream__is_json(s.content_type);
begin
    if v_start > s.tail or v_start < 0 then
        perform jobtail_stream__refuse('invalid', 'offset is beyond the stream''s tail');
    end if;
    select max(p.o_stop),
           string_agg(p.o_data, case when v_json then '\x0a'::bytea else ''::bytea end
                      order by p.o_start)
      into v_stop, v_data
      from jobtail_stream__pieces(s.stream_id, v_start, s.tail, p_budget, p_limit) p;
    if s.ttl is not null and not jobtail_stream__read_only() then
        update streams set touched_at = jobtail_stream__now() where stream_id = s.stream_id;
    end if;
    return jsonb_build_object(
        'meta', jobtail_stream__meta(s), 'start', v_start, 'stop', coalesce(v_stop, v_start),
        'data', case when v_data is null then ''
                     when v_json then convert_from(v_data, 'UTF8')
                     else translate(encode(v_data, 'base64'), E'\n', '') end);
end
$$;

-- as 0003/0004: no EXECUTE for PUBLIC or the client roles (anon's call would find no rows under
-- RLS anyway); the service role gets it
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
