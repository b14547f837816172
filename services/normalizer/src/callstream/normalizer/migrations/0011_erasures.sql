-- Erasure (issue #19, section 2): the normalizer's part of an erasure job (``_erasure.py``).
--
-- normalizer_erasures: one row per job (the gateway keeps the job as a whole; this is the state
-- of this service's part, so a crash resumes it and its counts survive the crash).
create table normalizer_erasures (
    erasure_id       text primary key,
    scope            text not null check (scope in ('integration', 'workspace')),
    workspace_id     text not null,
    integration_ids  text[] not null,
    counts           jsonb not null default '{}'::jsonb,
    requested_at     timestamptz not null,
    started_at       timestamptz not null default now(),
    finished_at      timestamptz
);

-- The messages an unfinished job erased, until its events in the streams are gone too: the
-- streams name messages by id and by provider call id, and after the rows are deleted nothing
-- else remembers which ids were this job's. Emptied when the job finishes.
create table normalizer_erasure_items (
    erasure_id   text not null references normalizer_erasures (erasure_id) on delete cascade,
    message_id   uuid not null,
    source       text not null,
    external_id  text not null,
    customer_id  uuid,
    primary key (erasure_id, message_id)
);

-- Integrations erased: a raw call of one that arrives later (a pull page in flight, a redelivery)
-- is never stored again. Ids only: nothing here names a call or a person.
create table normalizer_erased_integrations (
    integration_id  text primary key,
    erasure_id      text not null,
    erased_at       timestamptz not null default now()
);

-- Messages erased, by callstream's own id (which the MessageDeleted events name anyway): a data
-- point of one that arrives later (recorded just before the erasure) is dropped, not dead-lettered
-- with its evidence quote, which is transcript text.
create table normalizer_erased_messages (
    message_id  uuid primary key,
    erasure_id  text not null
);

-- A BEFORE INSERT trigger rather than a change to normalizer_store_batch: the store's statements
-- stay as they are (an insert skipped here is simply not among the rows it returns, so nothing
-- hangs off it and no event is announced). The job registers an integration while holding a lock
-- that waits for every write to messages in flight (``_erasure.REGISTER``), so a raw call is
-- either stored before the registration (and erased by the job) or skipped here.
create function normalizer_skip_erased_integration() returns trigger language plpgsql as $$
begin
    if exists (select 1 from normalizer_erased_integrations where integration_id = new.integration_id) then
        return null;
    end if;
    return new;
end
$$;
create trigger messages_skip_erased_integration before insert on messages for each row
    when (new.integration_id is not null)
    execute function normalizer_skip_erased_integration();
