-- Each outbox row keeps the W3C trace context of the raw call it was stored from, so the relay's
-- MessageUpserted continues that call's trace (its ``traceparent``/``tracestate`` headers) however
-- long the row waits. Null for rows written before this migration and for calls without one.
alter table outbox add column traceparent text, add column tracestate text;

-- ``normalizer_finish_batch`` with each event's trace context. The 7-argument version stays for
-- replicas of the previous release during a rolling deploy (their rows simply carry none).
create function normalizer_finish_batch(
    order_lock bigint, channel text, subjects text[], payloads bytea[], traceparents text[], tracestates text[],
    h_workspace text[], h_source text[], h_host text[]
) returns void language plpgsql as $$
begin
    if cardinality(subjects) > 0 then
        perform pg_advisory_xact_lock(order_lock);
        insert into outbox (subject, payload, traceparent, tracestate)
        select * from unnest(subjects, payloads, traceparents, tracestates);
        perform pg_notify(channel, '');
    end if;
    if cardinality(h_workspace) > 0 then
        insert into provider_hosts as p (workspace_id, source, host)
        select * from unnest(h_workspace, h_source, h_host)
        on conflict (workspace_id, source) do update set host = excluded.host, seen_at = now()
        where p.host <> excluded.host;
    end if;
end
$$;

-- The relay's take, now with the trace context (a function's result type cannot be replaced in
-- place). The previous release reads its three columns by name, so it works with this one too.
drop function normalizer_take_outbox(integer, bigint);
create function normalizer_take_outbox(batch integer, relay_lock bigint)
returns table (id bigint, subject text, payload bytea, traceparent text, tracestate text)
language sql set enable_seqscan = off as $$
    update outbox set published_at = now()
    where outbox.id in (
        select o.id from outbox o
        where o.published_at is null and (select pg_try_advisory_xact_lock(relay_lock))
        order by o.id limit batch for update skip locked
    )
    returning outbox.id, outbox.subject, outbox.payload, outbox.traceparent, outbox.tracestate
$$;
