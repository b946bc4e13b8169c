"""Business hours and SLA policies: the clock a duration runs on, and the targets it is held to."""
