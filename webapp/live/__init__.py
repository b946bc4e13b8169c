"""The live path, without Flask: per-organization event streams (events), the relay that follows them
in each web process (relay), each socket's queue of events and replay (connection), and live metric
values (subscriptions)."""
