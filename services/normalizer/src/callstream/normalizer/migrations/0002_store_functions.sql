-- The store's statements as two functions, so a batch costs four round trips (begin, store,
-- finish, commit) instead of a dozen. At 500 webhooks/s on two cores every round trip waits for
-- the database backend to be scheduled, and that wait, not the SQL, was most of a batch's time.
-- The rules are those of ``_store.py`` (which says them in words); each statement takes a fresh
-- snapshot (read committed), so rows another replica committed meanwhile are seen, as before.

create function normalizer_store_batch(
    c_workspace text[], c_domain text[], c_name text[], c_industry text[], c_website text[],
    c_system text[], c_external text[], c_attributes text[],
    m_workspace text[], m_source text[], m_external text[], m_integration text[], m_title text[],
    m_content text[], m_channel_name text[], m_channel_id text[], m_author_name text[],
    m_author_id text[], m_author_email text[], m_sent_at timestamptz[], m_metadata text[],
    m_ai_insights text[], m_customer_domain text[], m_hash text[], m_observed_at timestamptz[],
    p_message integer[], p_position integer[], p_name text[], p_email text[], p_affiliation text[],
    p_speaker_id text[], p_role text[]
) returns table (id uuid, workspace_id text, source text, external_id text, version integer,
                 created boolean, customer_id uuid)
-- Every statement here finds its rows by key. A plan is made once per connection, maybe while a
-- table is nearly empty (a new installation), and then kept: such a plan seq-scanned
-- message_participants on every batch as the table grew (5.8 M rows read in 10 s at 200 meetings/s,
-- measured on the separate statements before this function). So scans go through the indexes.
language plpgsql set enable_seqscan = off as $$
#variable_conflict use_column
declare
    w_id uuid[];
    w_workspace text[];
    w_source text[];
    w_external text[];
    w_version integer[];
    w_created boolean[];
    w_customer uuid[];
begin
    if cardinality(c_workspace) > 0 then
        insert into customers as c (workspace_id, domain, name, industry, website, external_system, external_id,
                                    attributes)
        select w, d, n, i, ws, es, ei, a::jsonb
        from unnest(c_workspace, c_domain, c_name, c_industry, c_website, c_system, c_external, c_attributes)
             as r(w, d, n, i, ws, es, ei, a)
        on conflict (workspace_id, domain) do update set
            name = excluded.name, industry = excluded.industry, website = excluded.website,
            external_system = excluded.external_system, external_id = excluded.external_id,
            attributes = excluded.attributes, updated_at = now()
        where
            -- a CRM account beats a CRM-named match, which beats a guess from the domain: never downgrade
            (case when excluded.external_system is not null then 2 when excluded.attributes <> '{}' then 1 else 0 end)
            >= (case when c.external_system is not null then 2 when c.attributes <> '{}' then 1 else 0 end)
            and (c.name, c.industry, c.website, c.external_system, c.external_id, c.attributes)
                is distinct from
                (excluded.name, excluded.industry, excluded.website, excluded.external_system, excluded.external_id,
                 excluded.attributes);
    end if;

    -- Rows arrive sorted by key and are inserted in that order, so replicas lock them alike.
    with written as (
        insert into messages as m (workspace_id, source, external_id, integration_id, title, content, channel_name,
            channel_id, author_name, author_id, author_email, sent_at, message_metadata, ai_insights, customer_id,
            content_hash, source_updated_at)
        select r.w, r.s, r.e, r.i, r.t, r.c, r.cn, r.ci, r.an, r.aid, r.ae, r.sa, r.mm::jsonb, r.ai::jsonb, cu.id,
               r.h, r.su
        from unnest(m_workspace, m_source, m_external, m_integration, m_title, m_content, m_channel_name,
                    m_channel_id, m_author_name, m_author_id, m_author_email, m_sent_at, m_metadata, m_ai_insights,
                    m_customer_domain, m_hash, m_observed_at)
             with ordinality as r(w, s, e, i, t, c, cn, ci, an, aid, ae, sa, mm, ai, cd, h, su, n)
        left join customers cu on cu.workspace_id = r.w and cu.domain = r.cd
        order by r.n
        on conflict (workspace_id, source, external_id) do update set
            integration_id = excluded.integration_id, title = excluded.title, content = excluded.content,
            channel_name = excluded.channel_name, channel_id = excluded.channel_id,
            author_name = excluded.author_name, author_id = excluded.author_id,
            author_email = excluded.author_email, sent_at = excluded.sent_at,
            message_metadata = excluded.message_metadata, ai_insights = excluded.ai_insights,
            customer_id = excluded.customer_id, content_hash = excluded.content_hash,
            source_updated_at = excluded.source_updated_at, version = m.version + 1, updated_at = now()
        where m.content_hash <> excluded.content_hash
            and (m.source_updated_at is null or excluded.source_updated_at >= m.source_updated_at)
            and (octet_length(excluded.content) > 0 or octet_length(m.content) = 0
                 or (excluded.message_metadata ->> 'private') = 'true')
        returning m.id, m.workspace_id, m.source, m.external_id, m.version, (m.xmax = 0) as created, m.customer_id
    )
    select array_agg(written.id order by written.workspace_id, written.source, written.external_id),
           array_agg(written.workspace_id order by written.workspace_id, written.source, written.external_id),
           array_agg(written.source order by written.workspace_id, written.source, written.external_id),
           array_agg(written.external_id order by written.workspace_id, written.source, written.external_id),
           array_agg(written.version order by written.workspace_id, written.source, written.external_id),
           array_agg(written.created order by written.workspace_id, written.source, written.external_id),
           array_agg(written.customer_id order by written.workspace_id, written.source, written.external_id)
    into w_id, w_workspace, w_source, w_external, w_version, w_created, w_customer
    from written;

    if w_id is not null then
        -- A written message's participants are replaced whole.
        delete from message_participants where message_id = any(w_id);
        insert into message_participants (message_id, position, name, email, affiliation, speaker_id, role)
        select w.id, p.pos, p.name, p.email, p.aff, p.sid, p.role
        from unnest(p_message, p_position, p_name, p_email, p_affiliation, p_speaker_id, p_role)
             as p(n, pos, name, email, aff, sid, role)
        join unnest(m_workspace, m_source, m_external) with ordinality as k(ws, s, e, n) on k.n = p.n
        join unnest(w_id, w_workspace, w_source, w_external) as w(id, ws, s, e)
             on w.ws = k.ws and w.s = k.s and w.e = k.e;

        -- Feature links that named this message before it arrived.
        update message_features mf set message_id = w.id
        from unnest(w_id, w_workspace, w_source, w_external, w_created) as w(id, ws, s, e, created)
        where w.created and mf.message_id is null
            and mf.workspace_id = w.ws and mf.source = w.s and mf.external_id = w.e;
    end if;

    return query
        select * from unnest(w_id, w_workspace, w_source, w_external, w_version, w_created, w_customer);
end
$$;

-- Ends a batch: its events appended under the order lock (held to commit, so outbox ids follow
-- commit order and the relay, publishing in id order, publishes in commit order), the relay woken,
-- then the provider hosts seen. Hosts come after the lock, as they did when these were separate
-- statements: replicas of both versions can run side by side (a rolling deploy) without taking
-- the two in opposite orders.
create function normalizer_finish_batch(
    order_lock bigint, channel text, subjects text[], payloads bytea[],
    h_workspace text[], h_source text[], h_host text[]
) returns void language plpgsql as $$
begin
    if cardinality(subjects) > 0 then
        perform pg_advisory_xact_lock(order_lock);
        insert into outbox (subject, payload) select * from unnest(subjects, payloads);
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

-- The relay's take: up to ``batch`` unpublished rows in id order, marked published (undone with the
-- transaction if publishing fails). The relay lock is tried once, before the scan (an uncorrelated
-- subquery): tried per row, a replica could get it halfway through its scan, when the holder
-- commits, and take later ids before earlier ones. While another replica holds it, nothing is read.
-- Marked rows stay for the retention period, so the table is large: rows are found by key.
create function normalizer_take_outbox(batch integer, relay_lock bigint)
returns table (id bigint, subject text, payload bytea)
language sql set enable_seqscan = off as $$
    update outbox set published_at = now()
    where outbox.id in (
        select o.id from outbox o
        where o.published_at is null and (select pg_try_advisory_xact_lock(relay_lock))
        order by o.id limit batch for update skip locked
    )
    returning outbox.id, outbox.subject, outbox.payload
$$;
