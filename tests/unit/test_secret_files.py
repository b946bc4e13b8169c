"""Secret files: processes starting together make one secret, and every one of them reads it whole."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

import pytest

from webapp import config

PROCESSES = 12


def _race(path: str, barrier: multiprocessing.synchronize.Barrier, results: multiprocessing.Queue) -> None:
    barrier.wait()
    results.put(config.secret_file(Path(path)))


@pytest.mark.parametrize("attempt", range(3))
def test_processes_racing_to_make_the_secret_all_read_the_one_that_won(tmp_path, attempt):
    path = tmp_path / "instance" / "jwt-secret"
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    workers = [context.Process(target=_race, args=(str(path), barrier, results)) for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    secrets = [results.get(timeout=30) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    assert len(set(secrets)) == 1
    assert secrets[0] == path.read_text().strip()
    assert len(secrets[0].encode()) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["jwt-secret"]  # no draft left behind
    assert config.secret_file(path) == secrets[0]  # and it stays


def test_a_secret_file_too_short_is_refused(tmp_path):
    path = tmp_path / "jwt-secret"
    path.write_text("short\n")
    with pytest.raises(RuntimeError, match="shorter than 32 bytes"):
        config.secret_file(path)


def test_the_link_key_is_derived_for_links_alone_unless_configured():
    jwt_key = "j" * 40
    derived = config.link_key(jwt_key, None)
    assert derived != jwt_key
    assert derived == config.link_key(jwt_key, None)
    assert config.link_key("k" * 40, None) != derived
    assert config.link_key(jwt_key, "e" * 32) == "e" * 32
    with pytest.raises(RuntimeError, match="EXPORT_SIGNING_KEY"):
        config.link_key(jwt_key, "too short")
