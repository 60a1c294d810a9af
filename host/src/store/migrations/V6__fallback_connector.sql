-- The standby connector (host/src/live): at most one, never the live one. Marked and cleared
-- as a connector change (the generation moves), so every host follows it.
ALTER TABLE connectors ADD COLUMN fallback boolean NOT NULL DEFAULT false;
ALTER TABLE connectors ADD CONSTRAINT fallback_is_not_live CHECK (NOT (fallback AND enabled));
CREATE UNIQUE INDEX one_fallback_connector_per_type ON connectors (type) WHERE fallback;
