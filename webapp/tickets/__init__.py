"""The write side: ticket fields and rules, single writes (writes) and their plans, bulk writes
(bulk, bulk_writer), what follows a write (effects), imports, reads, and demo seeding."""
