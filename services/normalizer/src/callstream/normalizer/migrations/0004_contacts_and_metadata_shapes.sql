-- Contacts: the external people of a workspace's calls, one per (workspace, email). The normalizer
-- writes them with the messages they came from (same transaction); the linker reads them
-- (GET /v1/contacts, GET /v1/customers/{id}).
--
-- Internal people (Gong affiliation Internal, Fathom's recorder and invitees with is_external
-- false) and people of unknown affiliation are NOT contacts: they stay only in
-- message_participants. A contact exists only while at least one stored call names it.
--
-- Columns the linker reads (a contract, like a subject):
--   contacts: id, workspace_id, email, name, title, customer_id, first_seen, last_seen,
--             call_count, created_at, updated_at
--   contact_messages: contact_id, message_id
create table contacts (
    id           uuid primary key default gen_random_uuid(),
    workspace_id text not null,
    email        text not null,                   -- lower-cased; the identity within the workspace
    name         text,                            -- as the latest call (by sent_at) names them
    title        text,                            -- job title when the provider sends one (Gong), else null
    customer_id  uuid references customers (id),  -- the customer of the email's domain, when there is one
    first_seen   timestamptz not null,            -- sent_at of the earliest call naming them
    last_seen    timestamptz not null,            -- sent_at of the latest call naming them
    call_count   integer not null default 0,      -- distinct messages naming them (redelivery never counts twice)
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    unique (workspace_id, email)
);
create index contacts_workspace_last_seen on contacts (workspace_id, last_seen desc, id desc);
create index contacts_customer on contacts (customer_id) where customer_id is not null;

-- Which messages name which contact: the counts and first/last seen are derived from it, so a
-- redelivered or re-derived message replaces its own rows and can never count twice.
create table contact_messages (
    contact_id  uuid not null references contacts (id) on delete cascade,
    message_id  uuid not null references messages (id) on delete cascade,
    primary key (contact_id, message_id)
);
create index contact_messages_message on contact_messages (message_id);

-- The contacts of the messages a batch wrote: each written message's contact rows are replaced
-- whole. Counts move by deltas (links really added minus links removed), so a batch costs the same
-- however many calls a contact already has, and concurrent batches add up (each update applies its
-- delta to the row as committed). first/last seen widen with each new call; only contacts that lost
-- a link (a message rewritten or no longer naming them) are measured again from their links.
-- Called in the store's transaction, after normalizer_store_batch, only for messages it wrote (an
-- unchanged redelivery writes nothing, so changes nothing here).
create function normalizer_store_contacts(
    k_message uuid[],
    c_message uuid[], c_workspace text[], c_email text[], c_name text[], c_title text[], c_seen timestamptz[]
) returns void
language plpgsql set enable_seqscan = off as $$
declare
    lost uuid[];
    lost_n integer[];
    added uuid[];
    added_n integer[];
begin
    with gone as (
        delete from contact_messages where message_id = any(k_message) returning contact_id
    )
    select array_agg(contact_id order by contact_id), array_agg(n order by contact_id) into lost, lost_n
    from (select contact_id, count(*)::integer as n from gone group by contact_id) g;

    if cardinality(c_message) > 0 then
        -- One row per (workspace, email), in key order so replicas lock contacts alike; the name and
        -- title of the latest call win. A new contact starts at 0 calls: the links below count.
        insert into contacts as c (workspace_id, email, name, title, customer_id, first_seen, last_seen)
        select distinct on (r.w, r.e) r.w, r.e, r.n, r.t, cu.id, r.s, r.s
        from unnest(c_workspace, c_email, c_name, c_title, c_seen) as r(w, e, n, t, s)
        left join customers cu on cu.workspace_id = r.w and cu.domain = split_part(r.e, '@', 2)
        order by r.w, r.e, r.s desc
        on conflict (workspace_id, email) do update set
            name = case when excluded.last_seen >= c.last_seen then coalesce(excluded.name, c.name)
                        else coalesce(c.name, excluded.name) end,
            title = case when excluded.last_seen >= c.last_seen then coalesce(excluded.title, c.title)
                         else coalesce(c.title, excluded.title) end,
            customer_id = coalesce(excluded.customer_id, c.customer_id),
            first_seen = least(c.first_seen, excluded.first_seen),
            last_seen = greatest(c.last_seen, excluded.last_seen),
            updated_at = now();

        with linked as (
            insert into contact_messages (contact_id, message_id)
            select c.id, r.m
            from unnest(c_message, c_workspace, c_email) as r(m, w, e)
            join contacts c on c.workspace_id = r.w and c.email = r.e
            on conflict do nothing
            returning contact_id
        )
        select array_agg(contact_id order by contact_id), array_agg(n order by contact_id) into added, added_n
        from (select contact_id, count(*)::integer as n from linked group by contact_id) l;
    end if;

    -- The contacts that gained a link are locked already (the upsert, in key order); a deadlock
    -- with another batch over the ones that only lost one is a transient error, retried.
    update contacts c set call_count = c.call_count + d.n, updated_at = now()
    from (
        select id, sum(n)::integer as n
        from (select * from unnest(coalesce(added, '{}'), coalesce(added_n, '{}')) as a(id, n)
              union all
              select id, -n from unnest(coalesce(lost, '{}'), coalesce(lost_n, '{}')) as l(id, n)) x
        group by id
        having sum(n) <> 0
    ) d
    where c.id = d.id;

    if lost is not null then
        -- A message rewritten may have moved in time or dropped people: measure those again.
        update contacts c set first_seen = s.first_seen, last_seen = s.last_seen
        from (
            select cm.contact_id,
                   min(coalesce(m.sent_at, m.created_at)) as first_seen,
                   max(coalesce(m.sent_at, m.created_at)) as last_seen
            from contact_messages cm join messages m on m.id = cm.message_id
            where cm.contact_id = any(lost)
            group by cm.contact_id
        ) s
        where c.id = s.contact_id and (c.first_seen, c.last_seen) is distinct from (s.first_seen, s.last_seen);

        -- A contact no stored call names any more is not a contact.
        delete from contacts c where c.id = any(lost) and c.call_count <= 0;
    end if;
end
$$;

-- Messages stored before their metadata carried ``metadata_version`` (the shape before #22): the
-- rederive job (``_rederive.py``) finds them through this index, so its periodic look costs an
-- index probe once none are left instead of reading every row's (large, out-of-line) metadata.
-- Building it reads each message's metadata once, here.
create index messages_metadata_unversioned on messages (id) where (message_metadata ->> 'metadata_version') is null;
