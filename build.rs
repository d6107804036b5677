// The end-to-end tests' PostgreSQL cases follow the same rule as the store
// crate's own: see webhooks-postgres/build.rs.
include!("webhooks-postgres/build.rs");
