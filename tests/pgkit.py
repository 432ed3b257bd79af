"""A throwaway PostgreSQL server for the tests: `initdb` + `pg_ctl` in a temporary folder.

`.ci/run` starts one with `python tests/pgkit.py start FOLDER` (which prints its URL) and
passes the URL to the tests in `LIVEDB_TEST_POSTGRES_URL`; without that variable the
`postgres_url` fixture (tests/conftest.py) starts one the same way for the session. The
server listens on 127.0.0.1 only, on a free port, with trust authentication, and keeps
its socket in its own folder. As root, `initdb` refuses to run, so the server then runs
as the `postgres` user (Debian's package creates it) or `nobody`, owning the folder.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time

USER = "postgres"
"""The database superuser the URL names (initdb -U)."""


def binaries() -> str | None:
    """The folder holding `initdb` and `pg_ctl`, or None when PostgreSQL is not installed."""
    found = shutil.which("pg_ctl")
    if found is not None and shutil.which("initdb") is not None:
        return os.path.dirname(os.path.realpath(found))
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(folder, "pg_ctl")):
            return folder
    return None


def _run_as() -> list[str]:
    """The command prefix that runs a program as a user initdb accepts."""
    if os.geteuid() != 0:
        return []
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return ["runuser", "-u", name, "--"]
    raise RuntimeError("running as root and there is no 'postgres' or 'nobody' user for "
                       "initdb")


def _owner() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_folder() -> str:
    """A new temporary folder for a server, where the server's user can reach it."""
    return tempfile.mkdtemp(prefix="livedb-pg-")


def start(folder: str) -> str:
    """Create a cluster in `folder` (made if missing), start it, return its URL."""
    bin_dir = binaries()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL is not installed (Debian: apt-get install "
                                "postgresql; .ci/run installs it)")
    os.makedirs(folder, exist_ok=True)
    owner = _owner()
    if owner is not None:
        os.chown(folder, *owner)
    os.chmod(folder, 0o700)
    data = os.path.join(folder, "data")
    prefix = _run_as()
    subprocess.run([*prefix, os.path.join(bin_dir, "initdb"), "-D", data, "-U", USER,
                    "-A", "trust", "-E", "UTF8", "--no-instructions"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    port = _free_port()
    settings = {"listen_addresses": "'127.0.0.1'", "port": str(port),
                "unix_socket_directories": f"'{folder}'", "max_connections": "200",
                "shared_buffers": "'64MB'"}
    with open(os.path.join(data, "postgresql.conf"), "a") as conf:
        conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
    _pg_ctl(folder, "start", "-l", os.path.join(folder, "log"))
    url = f"postgresql://{USER}@127.0.0.1:{port}/postgres"
    with open(os.path.join(folder, "url"), "w") as f:
        f.write(url)
    return url


def restart(folder: str, down: float = 0.0) -> None:
    """Stop the server (fast: sessions are cut), wait `down` seconds, start it again."""
    stop(folder)
    time.sleep(down)
    _pg_ctl(folder, "start", "-l", os.path.join(folder, "log"))


def stop(folder: str) -> None:
    """Stop the server (idempotent)."""
    if os.path.exists(os.path.join(folder, "data", "postmaster.pid")):
        _pg_ctl(folder, "stop", "-m", "fast")


def _pg_ctl(folder: str, *args: str) -> None:
    bin_dir = binaries()
    assert bin_dir is not None
    subprocess.run([*_run_as(), os.path.join(bin_dir, "pg_ctl"), "-D",
                    os.path.join(folder, "data"), "-w", "-t", "60", *args],
                   check=True, stdout=subprocess.DEVNULL)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: python tests/pgkit.py start|stop FOLDER", file=sys.stderr)
        return 2
    if argv[0] == "start":
        print(start(argv[1]))
    else:
        stop(argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
