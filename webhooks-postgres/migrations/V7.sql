-- The checksum of every migration applied, recorded as it is applied
-- (those applied before this column existed, as they were shipped): a
-- database migrated by a modified build is refused, not guessed at.
ALTER TABLE webhooks.schema_migrations ADD COLUMN checksum TEXT;
