"""Real processes and sockets for the multi-instance and fault suites.

- :func:`create_database` / :func:`fresh_database`: a database of the
  test's own, migrated: a SQLite file, or a fresh PostgreSQL database
  (``e2e_<hex>``, created on the ``TEST_DATABASE_URL`` server and dropped
  afterwards) when that is set.
- :class:`Instance` / :func:`running_instances`: ``python -m
  examples.video_app`` processes on free loopback ports, configured by
  ``HEYGEN_*`` variables only, ready once ``GET /api/v1/health`` answers 200,
  and always stopped at the end.
- :class:`TcpProxy`: a loopback TCP forwarder a test can cut (open
  connections reset, new ones refused) and restore, to take a database
  server away from an application and give it back.
- :func:`remove_redis_keys`: deletes one application's keys by prefix (SCAN,
  never FLUSHDB: the CI server is shared).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from examples.video_app.migrate import upgrade_database
from heygen_conventions import Database
from tests.conftest import TEST_DATABASE_URL
from tests.fixtures.cache import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]
#: Generous: two processes importing the app at once on a loaded 2-core machine.
STARTUP_SECONDS = 60.0
STOP_SECONDS = 10.0


# --- databases ---------------------------------------------------------------


async def _on_server(statements: Sequence[str], **parameters: str) -> None:
    assert TEST_DATABASE_URL is not None
    engine = create_async_engine(
        TEST_DATABASE_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    try:
        async with engine.connect() as connection:
            for statement in statements:
                await connection.execute(text(statement), parameters)
    finally:
        await engine.dispose()


async def create_database(directory: Path) -> str:
    """The URL of an empty, migrated database that only this test uses.

    A SQLite file in ``directory``; with ``TEST_DATABASE_URL`` set, a new
    PostgreSQL database on that server. Remove it with :func:`drop_database`.
    """
    if TEST_DATABASE_URL is None:
        url = f"sqlite+aiosqlite:///{directory / f'shared-{secrets.token_hex(4)}.db'}"
    else:
        name = f"e2e_{secrets.token_hex(6)}"
        await _on_server([f'CREATE DATABASE "{name}"'])
        url = make_url(TEST_DATABASE_URL).set(database=name).render_as_string(hide_password=False)
    try:
        await _migrate(url)
    except BaseException:
        await drop_database(url)
        raise
    return url


async def drop_database(url: str) -> None:
    """Drop a PostgreSQL database :func:`create_database` made, ending its sessions first."""
    name = make_url(url).database
    if make_url(url).get_backend_name() != "postgresql" or not name:
        return  # a SQLite file goes with the test's directory
    await _on_server(
        [
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = :name AND pid <> pg_backend_pid()",
            f'DROP DATABASE IF EXISTS "{name}"',
        ],
        name=name,
    )


@contextlib.contextmanager
def fresh_database(directory: Path) -> Iterator[str]:
    """:func:`create_database` for synchronous fixtures, dropped at the end."""
    url = asyncio.run(create_database(directory))
    try:
        yield url
    finally:
        asyncio.run(drop_database(url))


async def _migrate(url: str) -> None:
    database = Database(url)
    try:
        await upgrade_database(database)
    finally:
        await database.dispose()


def remove_redis_keys(url: str, prefix: str) -> int:
    """Delete the keys under ``prefix`` on the server at ``url``; how many there were."""
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=500))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
        return len(keys)
    finally:
        client.close()


# --- application processes ---------------------------------------------------


@dataclass
class Instance:
    """One ``python -m examples.video_app`` process."""

    name: str
    log: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else "(no output)"

    def start(self, environment: Mapping[str, str]) -> None:
        self.port = free_port()
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
                [
                    sys.executable,
                    "-m",
                    "examples.video_app",
                    "--no-migrate",
                    "--no-seed",
                    "--port",
                    str(self.port),
                ],
                cwd=ROOT,
                env=dict(environment),
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def ready(self) -> bool:
        """True once the health endpoint answers 200; raises if the process died."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise ProcessExited(self)
        try:
            return httpx.get(f"{self.api}/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_SECONDS)
        self.process = None


class ProcessExited(Exception):
    def __init__(self, instance: Instance) -> None:
        super().__init__(f"instance {instance.name} exited:\n{instance.output()}")
        self.instance = instance


def instance_environment(**heygen: str) -> dict[str, str]:
    """This process's environment without any ``HEYGEN_*`` variable, plus ``heygen``."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HEYGEN_")}
    environment.update({f"HEYGEN_{name.upper()}": value for name, value in heygen.items()})
    return environment


@dataclass
class Cluster:
    """Instances of the app on one database and one Redis."""

    instances: list[Instance]
    database_url: str
    redis_url: str
    app_name: str
    redis_server: RedisServer | None = None

    def logs(self, lines: int = 150) -> str:
        """The last ``lines`` lines each instance wrote."""
        return "\n".join(
            f"----- instance {instance.name} (port {instance.port}) -----\n"
            + "\n".join(instance.output().splitlines()[-lines:])
            for instance in self.instances
        )


@contextlib.contextmanager
def running_instances(
    names: Sequence[str], directory: Path, environment: Mapping[str, str]
) -> Iterator[list[Instance]]:
    """Start one process per name, wait until all serve, stop them all at the end.

    A process that exits while starting (its port taken between the probe
    and uvicorn's bind) is started again on another port, twice at most.
    """
    instances = [Instance(name, directory / f"instance-{name}.log") for name in names]
    try:
        for instance in instances:
            instance.start(environment)
        pending = list(instances)
        restarts = dict.fromkeys(names, 0)
        deadline = time.monotonic() + STARTUP_SECONDS
        while pending:
            for instance in list(pending):
                try:
                    if instance.ready():
                        pending.remove(instance)
                except ProcessExited:
                    if restarts[instance.name] == 2 or "in use" not in instance.output():
                        raise
                    restarts[instance.name] += 1
                    instance.start(environment)
            if pending:
                assert time.monotonic() < deadline, "instances did not start:\n" + "\n".join(
                    instance.output() for instance in pending
                )
                time.sleep(0.1)
        yield instances
    finally:
        for instance in instances:
            instance.stop()


# --- a cuttable TCP path ----------------------------------------------------


class TcpProxy:
    """Forwards connections on a loopback port to ``target``; :meth:`cut` takes it away.

    While cut, the listening socket is closed (new connections are refused)
    and every forwarded connection was reset, which is what an application
    sees when its database server goes away. :meth:`restore` listens again on
    the same port.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._writers.update((writer, upstream_writer))
        for source, sink in ((reader, upstream_writer), (upstream_reader, writer)):
            task = asyncio.get_running_loop().create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while chunk := await source.read(65536):
                sink.write(chunk)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            sink.transport.abort()
            self._writers.discard(sink)

    async def cut(self) -> None:
        """Refuse new connections and reset the open ones."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        await asyncio.sleep(0)

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        await self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
