"""Synthetic tickets and their events for demos and benchmarks, written through PostgreSQL COPY.

Each ticket follows a timeline of offsets from its creation counted in quanta of 36 seconds
(0.01 h), so every event's value in hours is an exact two-decimal number. Only events before
`now` are written, and the ticket row is the state those events leave behind, exactly as
webapp.tickets would have left it had the changes arrived one at a time.

arrivals draws when tickets are created, timeline what happens to each, rows turns a batch into
COPY text (copy_text), and load writes the batches.
"""

from webapp.tickets.seeding.load import SeedStats, seed_tickets
from webapp.tickets.seeding.population import AGENTS, CATEGORIES

__all__ = ["AGENTS", "CATEGORIES", "SeedStats", "seed_tickets"]
