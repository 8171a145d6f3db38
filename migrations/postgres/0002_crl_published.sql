-- 0002: the number of the newest published CRL, guarded on the crl_state
-- row: publishing takes the row lock and succeeds only with a larger
-- number (READ COMMITTED re-checks the WHERE after a concurrent publish).
ALTER TABLE crl_state ADD COLUMN published bigint NOT NULL DEFAULT 0;
