"""The development stack behind `make run` and `make test`: embedded PostgreSQL and Redis installed
from PyPI (or the servers DATABASE_URL / REDIS_URL name), the Procfile's processes under supervisord,
and the demo data of a first run. The application never imports it (a layer contract)."""
