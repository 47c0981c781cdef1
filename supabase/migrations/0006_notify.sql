-- jobtail: coalesced NOTIFY. PostgreSQL takes a database-wide lock at the commit of every
-- transaction that notified, so many writers each notifying every append queue up behind one
-- another. Appends now notify a run at most once per window (jobtail.notify_window_ms, 5 by
-- default): one that comes sooner only records the run as changed. Listeners poll the window's
-- trailing edge after each wake-up (PostgresStore.next_poll_interval), and polling stays the
-- fallback, so no line waits longer than about a window for a reader that was woken. Status
-- changes (claim, finish) still notify at once. jobtail.notify = 'every' restores a NOTIFY per
-- append, 'off' none (polling only). Signatures and every other behaviour are 0004's; the body
-- of jobtail__write below is 0004's but for its last lines (tests/store/test_notify.py keeps
-- them in step). Idempotent.

alter table runs add column if not exists notified_at timestamptz;

-- Announce a change to run r (locked by the caller): NOTIFY unless one went out within the
-- window, in which case the listeners' trailing poll picks the change up. True if it notified
-- (the caller then records when, in the update it makes anyway).
create or replace function jobtail__announce(r runs)
returns boolean language plpgsql as $$
declare
    v_mode text := coalesce(nullif(current_setting('jobtail.notify', true), ''), 'coalesced');
    v_window interval := make_interval(secs => coalesce(
        nullif(current_setting('jobtail.notify_window_ms', true), '')::double precision, 5) / 1000);
    v_now timestamptz := clock_timestamp();
begin
    if v_mode = 'off' then
        return false;
    end if;
    if v_mode = 'every' or r.notified_at is null or r.notified_at <= v_now - v_window then
        perform pg_notify('jobtail', r.run_id);
        return true;
    end if;
    return false;
end
$$;

create or replace function jobtail__write(r runs, p_lines jsonb, p_epoch bigint)
returns bigint language plpgsql as $$
declare
    v_count bigint;
    v_first bigint;
    v_max bigint;
begin
    if p_epoch is not null and p_epoch <> r.epoch then
        perform jobtail__refuse(r, 'stale_epoch');
    end if;
    with l as (
        select case when coalesce(j.seq, 0) = 0 then r.last_seq + row_number() over ()
                    else j.seq end as seq,
               j."timestamp", j.log_level, j.level_no, j.message, j.fields
          from jsonb_to_recordset(coalesce(p_lines, '[]'::jsonb)) as j(
              seq bigint, "timestamp" timestamptz, log_level text, level_no integer,
              message text, fields jsonb)
    ), inserted as (
        insert into runs_logs (run_id, seq, upload_id, service_name, "timestamp", log_level,
                               level_no, message, fields)
        select r.run_id, l.seq, r.upload_id, r.service_name,
               coalesce(l."timestamp", clock_timestamp()), coalesce(l.log_level, 'INFO'),
               coalesce(l.level_no, case upper(l.log_level)
                   when 'DEBUG' then 10 when 'INFO' then 20 when 'WARNING' then 30
                   when 'WARN' then 30 when 'ERROR' then 40 when 'CRITICAL' then 50
                   when 'FATAL' then 50 else 20 end),
               coalesce(l.message, ''), nullif(l.fields, 'null'::jsonb)
          from l
         where l.seq > r.last_seq
         order by l.seq
        on conflict (run_id, seq) do nothing
        returning seq
    )
    select count(*), min(seq), max(seq) into v_count, v_first, v_max from inserted;
    if v_count = 0 then
        return r.last_seq;  -- a retry: every line is committed already
    end if;
    if r.status not in ('queued', 'running') then
        perform jobtail__refuse(r, 'closed');
    end if;
    if v_first <> r.last_seq + 1 or v_max - v_first + 1 <> v_count then
        perform jobtail__refuse(r, 'gap', r.last_seq + 1,
                                case when v_first <> r.last_seq + 1 then v_first else v_max end);
    end if;
    if jobtail__announce(r) then
        update runs set last_seq = v_max, notified_at = clock_timestamp() where run_id = r.run_id;
    else
        update runs set last_seq = v_max where run_id = r.run_id;
    end if;
    return v_max;
end
$$;

-- as 0003/0004: no EXECUTE for PUBLIC or the client roles; the service role keeps its grant
do $$
declare
    v_service boolean := exists (select 1 from pg_roles where rolname = 'service_role');
begin
    revoke all on function jobtail__announce(runs) from public, anon, authenticated;
    revoke all on function jobtail__write(runs, jsonb, bigint) from public, anon, authenticated;
    if v_service then
        grant execute on function jobtail__announce(runs) to service_role;
        grant execute on function jobtail__write(runs, jsonb, bigint) to service_role;
    end if;
end
$$;
