-- 0003: the token's secret hash in its own column, so the statement that
-- redeems a token checks the secret itself and an enrollment reads the
-- token once (the redemption no longer re-reads it to compare the hash).
-- Backfilled from rec (store.Token as JSON, the hash in base64). The
-- column stays nullable: a replica of the previous release, running during
-- a rolling upgrade, inserts tokens without it, and the redemption falls
-- back to the hash in rec for those.
ALTER TABLE tokens ADD COLUMN hash bytea;
UPDATE tokens SET hash = decode(convert_from(rec, 'UTF8')::jsonb->>'hash', 'base64');
