-- The message log (host/src/store/message_log.rs): every send, its status as delivery reports
-- tell it, and its events. Only the phone's last four digits are kept.
CREATE TABLE messages (
    id text PRIMARY KEY,
    connector_id text NOT NULL,
    factory_id text NOT NULL,
    purpose text NOT NULL,
    phone_tail text NOT NULL,
    status text,
    provider_message_id text,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);
CREATE INDEX messages_by_creation ON messages (created_at);

-- One row per distinct event: a provider's retried report is not a second one.
CREATE TABLE message_events (
    message_id text NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    at bigint NOT NULL,
    status text NOT NULL,
    provider_status text NOT NULL,
    error_code text NOT NULL,
    source text NOT NULL,
    seq bigserial,
    UNIQUE (message_id, source, status, provider_status, error_code)
);
