-- jobtail: a queued run takes no fenced write before its claim. An append, heartbeat or close
-- naming an epoch (0 included) on a queued run is refused as 'unclaimed' (PT409), as the HTTP
-- producer's are (2dbdbc3): no writer owns an epoch before the claim. Before, jobtail__write
-- took lines at epoch 0 into a run that stayed queued, while jobtail_heartbeat refused epoch 0
-- as 'closed'. An unfenced write (p_epoch null: the janitor failing a queued run with a line
-- saying why) is unchanged. jobtail__write's body is 0006's but for its first check
-- (tests/store/test_unclaimed.py keeps them in step). Idempotent.

create or replace function jobtail__refuse(r runs, p_reason text, p_expected bigint default null,
                                           p_received bigint default null)
returns void language plpgsql as $$
begin
    if p_reason = 'stale_epoch' then
        raise exception 'jobtail: run % was claimed by a newer writer (epoch %)', r.run_id, r.epoch
            using errcode = 'PT403', detail = json_build_object(
                'reason', p_reason, 'run_id', r.run_id, 'epoch', r.epoch, 'status', r.status)::text;
    elsif p_reason = 'closed' then
        raise exception 'jobtail: run % is closed (%)', r.run_id, r.status
            using errcode = 'PT409', detail = json_build_object(
                'reason', p_reason, 'run_id', r.run_id, 'epoch', r.epoch, 'status', r.status)::text;
    elsif p_reason = 'unclaimed' then
        raise exception 'jobtail: run % is queued: claim it (a new epoch) before writing', r.run_id
            using errcode = 'PT409', detail = json_build_object(
                'reason', p_reason, 'run_id', r.run_id, 'epoch', r.epoch, 'status', r.status)::text;
    else
        raise exception 'jobtail: run % expects seq % next, not %', r.run_id, p_expected, p_received
            using errcode = 'PT409', detail = json_build_object(
                'reason', 'gap', 'run_id', r.run_id, 'expected', p_expected,
                'received', p_received)::text;
    end if;
end
$$;

create or replace function jobtail__write(r runs, p_lines jsonb, p_epoch bigint)
returns bigint language plpgsql as $$
declare
    v_count bigint;
    v_first bigint;
    v_max bigint;
begin
    if p_epoch is not null and r.status = 'queued' then
        perform jobtail__refuse(r, 'unclaimed');
    end if;
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

create or replace function jobtail_heartbeat(p_run_id text, p_epoch bigint default null)
returns boolean language plpgsql as $$
declare
    r runs;
begin
    update runs set heartbeat_at = clock_timestamp()
     where run_id = p_run_id and status = 'running' and (p_epoch is null or epoch = p_epoch);
    if found then
        return true;
    end if;
    if p_epoch is null then
        return false;
    end if;
    select * into r from runs where run_id = p_run_id;
    if not found then
        return false;
    end if;
    perform jobtail__refuse(r, case when r.status = 'queued' then 'unclaimed'
                                    when r.epoch <> p_epoch then 'stale_epoch'
                                    else 'closed' end);
    return false;
end
$$;

-- as 0003/0004: no EXECUTE for PUBLIC or the client roles; the service role keeps its grant
do $$
declare
    v_fn regprocedure;
    v_service boolean := exists (select 1 from pg_roles where rolname = 'service_role');
begin
    foreach v_fn in array array[
        'jobtail__refuse(runs, text, bigint, bigint)'::regprocedure,
        'jobtail__write(runs, jsonb, bigint)'::regprocedure,
        'jobtail_heartbeat(text, bigint)'::regprocedure
    ] loop
        execute format('revoke all on function %s from public, anon, authenticated', v_fn);
        if v_service then
            execute format('grant execute on function %s to service_role', v_fn);
        end if;
    end loop;
end
$$;
