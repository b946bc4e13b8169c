"""Alerts on metrics, without Flask or Celery: conditions and the anomaly score (conditions), the
buckets a rule is evaluated on (periods), their values read from the database (readings), the one
evaluation that live passes and simulations share (evaluation), rules (rules) and the live pass that
records each transition once and hands it to its channels (live)."""
