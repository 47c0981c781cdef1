-- jobtail: an index on streams.fork_of. Removing a stream row makes PostgreSQL check the
-- foreign key streams.fork_of -> streams.stream_id (0004_streams.sql) for rows still pointing at
-- it, and without an index that check read the whole table: each removal (a DELETE, an expiry
-- met on access, the janitor's sweep of 0016_stream_sweep.sql) took about 8 ms at 100,000
-- streams, so a sweep of 10,000 expired streams took 89 s. Partial: most streams are no fork.
-- Building it locks writes to streams for as long as it takes (well under a second at 100,000
-- streams). Idempotent.

create index if not exists streams_fork_of on streams (fork_of) where fork_of is not null;
