-- Configs are sealed by the hosts (XChaCha20-Poly1305 under a key file that never enters the
-- database); this records which key, by id, so a host with another key file refuses to start
-- or to write rather than seal configs the other hosts cannot open.
CREATE TABLE store_settings (
    name   text PRIMARY KEY,
    value  text NOT NULL
);
