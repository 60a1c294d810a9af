-- Reservations for several sends of one host in one round trip and one transaction: the
-- rules of reserve_send (V1, kept for hosts not upgraded yet; both take the same per-phone
-- lock), applied to the requests in the order given, so a later request for a phone sees the
-- earlier ones of the batch. Every phone of the batch is locked first, in one fixed order (by
-- lock key): two batches from two hosts never wait on each other in a cycle.
-- Returns one row per request, request_index from 1: a reservation id, or a refusal and the
-- milliseconds until it lifts.
CREATE FUNCTION reserve_sends(
    p_phones text[], p_types text[], p_with_cooldowns boolean[],
    p_max_sends integer, p_window_ms bigint, p_cooldown_ms bigint
) RETURNS TABLE (request_index integer, reservation_id bigint, refusal text, retry_after_ms bigint)
LANGUAGE plpgsql AS $$
DECLARE
    now_ms bigint;
    lock_key bigint;
    last_of_type bigint;
    in_window bigint;
    freeing bigint;
BEGIN
    -- A lost count after a PostgreSQL crash costs less than an fsync per batch.
    PERFORM set_config('synchronous_commit', 'off', true);
    FOR lock_key IN
        SELECT DISTINCT hashtextextended(phone, 0) FROM unnest(p_phones) AS phone ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock(lock_key);
    END LOOP;
    -- Read after the locks: every statement below sees what the previous holders committed.
    now_ms := (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
    FOR i IN 1 .. coalesce(cardinality(p_phones), 0) LOOP
        request_index := i;
        reservation_id := NULL;
        refusal := NULL;
        retry_after_ms := NULL;
        last_of_type := NULL;
        IF p_with_cooldowns[i] AND p_cooldown_ms > 0 THEN
            SELECT max(sent_at) INTO last_of_type FROM recipient_sends
            WHERE phone = p_phones[i] AND type = p_types[i] AND sent_at > now_ms - p_cooldown_ms;
        END IF;
        IF last_of_type IS NOT NULL THEN
            refusal := 'cooldown';
            retry_after_ms := last_of_type + p_cooldown_ms - now_ms;
        ELSE
            SELECT count(*) INTO in_window FROM recipient_sends
            WHERE phone = p_phones[i] AND sent_at > now_ms - p_window_ms;
            IF in_window >= p_max_sends THEN
                -- A slot frees when the p_max_sends-th newest send leaves the window.
                SELECT sent_at INTO freeing FROM recipient_sends
                WHERE phone = p_phones[i] AND sent_at > now_ms - p_window_ms
                ORDER BY sent_at DESC OFFSET (p_max_sends - 1) LIMIT 1;
                refusal := 'rate_limited';
                retry_after_ms := freeing + p_window_ms - now_ms;
            ELSE
                INSERT INTO recipient_sends (phone, type, sent_at)
                VALUES (p_phones[i], p_types[i], now_ms)
                RETURNING id INTO reservation_id;
            END IF;
        END IF;
        RETURN NEXT;
    END LOOP;
END;
$$;
