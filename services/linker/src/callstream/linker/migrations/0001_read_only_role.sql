-- The linker only reads. This role holds exactly what it may read; a deployment gives the
-- linker's login role membership (create role linker login password '...' in role
-- callstream_linker_ro), on the primary or on a replica. Roles are cluster-wide, so creating it
-- is idempotent; the grants are per database.
do $$
begin
    if not exists (select from pg_roles where rolname = 'callstream_linker_ro') then
        create role callstream_linker_ro nologin;
    end if;
exception when duplicate_object then
    null;  -- another database of the same cluster created it at the same moment
end $$;

grant usage on schema public to callstream_linker_ro;
grant select on
    messages, customers, message_participants, features, message_features, provider_hosts, api_tokens
    to callstream_linker_ro;
