"""The read side: metrics, windows and buckets, SQL over events and rollups, the cache, snapshots, SLA."""
