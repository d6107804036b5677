//! The `webhooks-core` store behaviour suite, run against `MemoryStore`.

webhooks_core::store_suite!(|| async { (webhooks_memory::MemoryStore::new(), ()) });
