-- A connect session makes an integration of its own unless it names one to reconnect (#18): a
-- second person of a workspace connecting their own provider account must never take the first
-- one's integration over. integration_id is that named integration (null: a new one).
alter table connect_sessions add column integration_id uuid;
