-- The checksum of every migration applied to the file, recorded as it is
-- applied (those applied before this table existed, as they were shipped):
-- a file migrated by a modified build is refused, not guessed at.
CREATE TABLE schema_migrations (
    version  INTEGER PRIMARY KEY,
    checksum TEXT NOT NULL
);
