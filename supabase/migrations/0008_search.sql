-- jobtail: search of a run in SQL, for PostgreSQL and Supabase alike (LogStore.search).
-- One call covers one window of seqs (after < seq <= upto) and returns the matching seqs in
-- order, at most p_limit: the caller pages by seq and bounds each call's time (a
-- statement_timeout on a direct connection, windows sized by how long the last one took over
-- PostgREST), so a search of a million lines never holds a connection for long.
-- The text searched is what the page shows: the message without its ANSI escapes (the pattern
-- is jobtail.store.matching.ANSI_PATTERN; only lines holding an ESC pay for the replace).
-- p_mode says how p_needle is matched:
--   'all'     every line at or above the level (p_needle unused)
--   'strpos'  a case-sensitive substring
--   'ilike'   an ILIKE pattern, \ as its escape (the caller escapes % and _)
--   'regex' / 'iregex'  a PostgreSQL ARE, case-sensitive or not (jobtail.store.pg_search.
--             pg_pattern translates Python's dialect; what it cannot, Python matches instead)
-- Idempotent.

create or replace function jobtail_search(
    p_run_id text,
    p_after bigint,
    p_upto bigint,
    p_min_level integer,
    p_mode text,
    p_needle text,
    p_limit integer
) returns setof bigint language plpgsql stable as $$
begin
    if p_mode is null or p_mode not in ('all', 'strpos', 'ilike', 'regex', 'iregex') then
        raise exception 'unknown search mode %', coalesce(p_mode, 'null')
            using errcode = '22023', hint = 'all, strpos, ilike, regex or iregex';
    end if;
    if p_mode <> 'all' and p_needle is null then
        raise exception 'search mode % needs a needle', p_mode using errcode = '22004';
    end if;
    return query
    select l.seq
      from runs_logs l
     cross join lateral (
        select case when strpos(l.message, chr(27)) > 0
                    then regexp_replace(
                        l.message,
                        '\x1b\[[0-9;:?]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)', '', 'g')
                    else l.message end
     ) as t(visible)
     where l.run_id = p_run_id
       and l.seq > p_after
       and l.seq <= p_upto
       and l.level_no >= coalesce(p_min_level, 0)
       and case p_mode
               when 'all' then true
               when 'strpos' then strpos(t.visible, p_needle) > 0
               when 'ilike' then t.visible ilike p_needle escape '\'
               when 'regex' then t.visible ~ p_needle
               else t.visible ~* p_needle
           end
     order by l.seq
     limit greatest(coalesce(p_limit, 0), 0);
end
$$;

-- Whether the database's lower() folds more than ASCII (its locale): a case-insensitive needle
-- with other letters is matched in Python where it does not.
create or replace function jobtail_search_folds_unicode()
returns boolean language sql stable as $$
    select lower(U&'\00C4') = U&'\00E4'
$$;

-- as 0003/0004/0007: no EXECUTE for PUBLIC or the client roles; the service role gets it
do $$
declare
    v_fn regprocedure;
    v_service boolean := exists (select 1 from pg_roles where rolname = 'service_role');
begin
    for v_fn in
        select p.oid::regprocedure
          from pg_proc p
         where p.proname like 'jobtail\_search%' and p.pronamespace = current_schema()::regnamespace
    loop
        execute format('revoke all on function %s from public, anon, authenticated', v_fn);
        if v_service then
            execute format('grant execute on function %s to service_role', v_fn);
        end if;
    end loop;
end
$$;
