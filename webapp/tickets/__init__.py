"""The write side: ticket fields, single and bulk writes, what follows a write, imports, demo seeding."""
