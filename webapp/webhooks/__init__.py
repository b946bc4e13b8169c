"""Webhooks, without Flask or Celery: endpoints and their secrets (records), where a URL may point
(targets: the SSRF guard), signing, the HTTP POST to a checked address (transport), and deliveries
with their retries and log (deliveries)."""
