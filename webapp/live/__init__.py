"""The live path: per-organization event streams, the relay that fans them out, live metric values."""
