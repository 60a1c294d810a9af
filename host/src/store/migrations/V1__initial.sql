-- connector-host's shared store. Run by `refinery` under an advisory lock, so hosts that start
-- together migrate once.

CREATE TABLE connectors (
    id          text PRIMARY KEY,
    factory_id  text NOT NULL,
    type        text NOT NULL DEFAULT 'Sms',
    -- Kept as the JSON text the plugin normalized (jsonb would reorder its keys).
    config      text NOT NULL,
    metadata    text NOT NULL DEFAULT '{}',
    enabled     boolean NOT NULL,
    created_at  bigint NOT NULL,
    updated_at  bigint NOT NULL
);
-- At most one live connector per type: the database refuses a second one.
CREATE UNIQUE INDEX one_live_connector_per_type ON connectors (type) WHERE enabled;

-- Bumped first by every connector change: its row lock serializes changes from all hosts,
-- and hosts compare it with the generation they serve.
CREATE TABLE connector_generation (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    value      bigint NOT NULL
);
INSERT INTO connector_generation (singleton, value) VALUES (true, 0);

-- One code per phone and usage type, as a keyed hash; never the code itself, never the key.
CREATE TABLE verification_codes (
    phone            text NOT NULL,
    type             text NOT NULL,
    code_hash        bytea NOT NULL,
    created_at       bigint NOT NULL,
    expires_at       bigint NOT NULL,
    failed_attempts  integer NOT NULL DEFAULT 0,
    PRIMARY KEY (phone, type)
);
CREATE INDEX verification_codes_by_expiry ON verification_codes (expires_at);

-- Flow control shared by every host: one row per successful (or in-flight) send.
CREATE TABLE recipient_sends (
    id       bigserial PRIMARY KEY,
    phone    text NOT NULL,
    type     text NOT NULL,
    sent_at  bigint NOT NULL
);
CREATE INDEX recipient_sends_by_phone ON recipient_sends (phone, sent_at);
CREATE INDEX recipient_sends_by_time ON recipient_sends (sent_at);

-- Checks the cooldown and the sliding window for one phone and takes a slot, in one round
-- trip. The per-phone advisory lock orders concurrent reservations from every host, so no
-- interleaving exceeds the cap. The database's clock is the one clock all hosts share.
-- Returns (reservation id) or (refusal, milliseconds until it lifts).
CREATE FUNCTION reserve_send(
    p_phone text, p_type text, p_with_cooldown boolean,
    p_max_sends integer, p_window_ms bigint, p_cooldown_ms bigint
) RETURNS TABLE (reservation_id bigint, refusal text, retry_after_ms bigint)
LANGUAGE plpgsql AS $$
DECLARE
    now_ms bigint := (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
    last_of_type bigint;
    in_window bigint;
    freeing bigint;
    new_id bigint;
BEGIN
    -- A lost count after a PostgreSQL crash costs less than an fsync per send.
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM pg_advisory_xact_lock(hashtextextended(p_phone, 0));
    IF p_with_cooldown AND p_cooldown_ms > 0 THEN
        SELECT max(sent_at) INTO last_of_type FROM recipient_sends
        WHERE phone = p_phone AND type = p_type AND sent_at > now_ms - p_cooldown_ms;
        IF last_of_type IS NOT NULL THEN
            RETURN QUERY SELECT NULL::bigint, 'cooldown'::text, last_of_type + p_cooldown_ms - now_ms;
            RETURN;
        END IF;
    END IF;
    SELECT count(*) INTO in_window FROM recipient_sends
    WHERE phone = p_phone AND sent_at > now_ms - p_window_ms;
    IF in_window >= p_max_sends THEN
        -- A slot frees when the p_max_sends-th newest send leaves the window.
        SELECT sent_at INTO freeing FROM recipient_sends
        WHERE phone = p_phone AND sent_at > now_ms - p_window_ms
        ORDER BY sent_at DESC OFFSET (p_max_sends - 1) LIMIT 1;
        RETURN QUERY SELECT NULL::bigint, 'rate_limited'::text, freeing + p_window_ms - now_ms;
        RETURN;
    END IF;
    INSERT INTO recipient_sends (phone, type, sent_at) VALUES (p_phone, p_type, now_ms)
    RETURNING id INTO new_id;
    RETURN QUERY SELECT new_id, NULL::text, NULL::bigint;
END;
$$;
