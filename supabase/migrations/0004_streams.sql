-- jobtail: Durable Streams storage (shared/jobtail/streams/postgres.py). A row per stream path
-- with its tail (in units: bytes, or messages for application/json) and closed flag; data rows
-- [start, stop); idempotent-producer state per stream. A fork points at its source and fork
-- offset (nothing is copied). Same access rules as runs: RLS on, nothing granted to anon or
-- authenticated. Idempotent.

create table if not exists streams (
    stream_id    text primary key,
    path         text not null unique,
    content_type text not null,
    ttl          bigint,
    expires_at   double precision,
    touched_at   double precision not null,
    tail         bigint not null,
    closed       smallint not null default 0,
    closed_by    text,
    stream_seq   text,
    fork_of      text references streams (stream_id),
    fork_offset  bigint,
    forks        bigint not null default 0,
    deleted      smallint not null default 0
);

create table if not exists streams_chunks (
    stream_id text not null,
    start     bigint not null,
    stop      bigint not null,
    data      bytea not null,
    primary key (stream_id, start)
);

create table if not exists streams_producers (
    stream_id   text not null,
    producer_id text not null,
    epoch       bigint not null,
    seq         bigint not null,
    primary key (stream_id, producer_id)
);

alter table streams enable row level security;
alter table streams_chunks enable row level security;
alter table streams_producers enable row level security;
revoke all on table streams, streams_chunks, streams_producers from public, anon, authenticated;
do $$
begin
    if exists (select 1 from pg_roles where rolname = 'service_role') then
        grant all on table streams, streams_chunks, streams_producers to service_role;
    end if;
end
$$;
