"""Two processes of the example app on one database and one Redis, as in production.

Each instance is ``python -m examples.video_app`` behind uvicorn on a loopback
port, configured by ``HEYGEN_*`` variables only. In CI (``TEST_DATABASE_URL``
and ``TEST_REDIS_URL`` set) they share a fresh PostgreSQL database and the CI
Redis, under an application name (the key prefix) of their own whose keys are
removed afterwards; elsewhere, a SQLite file and a throwaway ``redis-server``.

The outage test stops Redis, which the shared CI server must never be: there
the instances use a throwaway ``redis-server`` in every environment, killed
with SIGKILL while a client keeps reading through both instances.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from heygen_conventions.testing import assert_error, assert_ok, auth_headers
from tests.conftest import TEST_REDIS_URL
from tests.e2e.conftest import PASSWORD
from tests.e2e.servers import (
    Cluster,
    Instance,
    fresh_database,
    instance_environment,
    remove_redis_keys,
    running_instances,
)
from tests.fixtures.cache import RedisServer, start_redis_server

REQUEST_SECONDS = 10.0


@contextlib.contextmanager
def cluster_on(
    directory: Path, redis_url: str, redis_server: RedisServer | None = None
) -> Iterator[Cluster]:
    """Instances ``a`` and ``b`` on a fresh database and ``redis_url``, under a fresh app name."""
    app_name = f"e2e-{secrets.token_hex(4)}"
    with fresh_database(directory) as database_url:
        environment = instance_environment(
            app_name=app_name,
            environment="test",
            database_url=database_url,
            redis_url=redis_url,
            jwt_secret=secrets.token_urlsafe(48),
            render_seconds="0",
            log_format="json",
        )
        try:
            with running_instances(["a", "b"], directory, environment) as instances:
                yield Cluster(instances, database_url, redis_url, app_name, redis_server)
        finally:
            if redis_url == TEST_REDIS_URL:
                remove_redis_keys(redis_url, f"{app_name}:")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two instances on the CI servers, or on SQLite and a throwaway redis-server."""
    directory = tmp_path_factory.mktemp("instances")
    if TEST_REDIS_URL:
        with cluster_on(directory, TEST_REDIS_URL) as running:
            yield running
        return
    server = start_redis_server(directory)
    try:
        with cluster_on(directory, server.url, server) as running:
            yield running
    finally:
        server.stop()


@pytest.fixture
def outage_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Two instances on a throwaway redis-server the test may kill and start again."""
    server = start_redis_server(tmp_path)
    try:
        with cluster_on(tmp_path, server.url, server) as running:
            yield running
    finally:
        server.stop()


# --- helpers -------------------------------------------------------------------


def sign_up(http: httpx.Client, instance: Instance, name: str) -> tuple[str, dict[str, Any]]:
    """Register a new user through ``instance``; their email and first tokens."""
    email = f"{name}-{secrets.token_hex(4)}@example.com"
    account = {"email": email, "password": PASSWORD, "full_name": name}
    assert_ok(http.post(f"{instance.api}/users", json=account), status=201)
    return email, log_in(http, instance, email)


def log_in(http: httpx.Client, instance: Instance, email: str) -> dict[str, Any]:
    form = {"username": email, "password": PASSWORD}
    tokens: dict[str, Any] = assert_ok(http.post(f"{instance.api}/auth/token", data=form))
    return tokens


def title_on(http: httpx.Client, instance: Instance, path: str, headers: dict[str, str]) -> str:
    title: str = assert_ok(http.get(instance.api + path, headers=headers))["title"]
    return title


def cached_entries(cluster: Cluster, video_id: str) -> list[bytes]:
    """The cache entries of one video in the shared Redis (under this cluster's prefix)."""
    client = redis.Redis.from_url(cluster.redis_url, socket_timeout=5)
    try:
        return list(client.scan_iter(match=f"{cluster.app_name}:videos:v*:{video_id}", count=500))
    finally:
        client.close()


def wait_for_cache(
    http: httpx.Client, instances: Sequence[Instance], state: str, seconds: float = 20
) -> None:
    """Poll each instance's health until it reports its cache ``ok`` or ``unavailable``."""
    deadline = time.monotonic() + seconds
    for instance in instances:
        while True:
            health = assert_ok(http.get(f"{instance.api}/health"))
            if health["cache"] == state:
                break
            assert time.monotonic() < deadline, f"{instance.name}: cache still {health}"
            time.sleep(0.1)


class Traffic(threading.Thread):
    """Reads through every instance until stopped, recording every request that fails.

    A read of the video is also a failure when it is stale: older than the
    last update that had been answered before the read was sent
    (``committed()``, the number in the title ``Take <n>``).
    """

    def __init__(
        self,
        instances: Sequence[Instance],
        video_path: str,
        headers: dict[str, str],
        committed: Callable[[], int],
    ) -> None:
        super().__init__(name="traffic", daemon=True)
        self.instances = instances
        self.video_path = video_path
        self.headers = headers
        self.committed = committed
        self.sent: list[float] = []
        self.failures: list[str] = []
        self._stopping = threading.Event()

    def run(self) -> None:
        targets = (self.video_path, "/users/me", "/videos?per_page=5&sort_by=title")
        with httpx.Client(timeout=REQUEST_SECONDS, headers=self.headers) as http:
            while not self._stopping.is_set():
                for instance in self.instances:
                    for target in targets:
                        self._get(http, instance, target)
                self._stopping.wait(0.01)

    def _get(self, http: httpx.Client, instance: Instance, target: str) -> None:
        floor = self.committed()
        self.sent.append(time.monotonic())
        try:
            response = http.get(instance.api + target)
        except httpx.HTTPError as exc:
            self.failures.append(f"{instance.name} GET {target}: {exc!r}")
            return
        if response.status_code != 200:
            self.failures.append(f"{instance.name} GET {target}: {response.text}")
        elif target == self.video_path:
            take = int(response.json()["data"]["title"].removeprefix("Take "))
            if take < floor:
                self.failures.append(f"{instance.name} served Take {take} after Take {floor}")

    def sent_between(self, start: float, end: float) -> int:
        return sum(1 for moment in self.sent if start <= moment < end)

    def wait_for(self, count: int, seconds: float = 10) -> None:
        """Block until ``count`` more requests have been sent."""
        target = len(self.sent) + count
        deadline = time.monotonic() + seconds
        while len(self.sent) < target:
            assert self.is_alive(), "the traffic thread died"
            assert time.monotonic() < deadline, "the traffic stalled"
            time.sleep(0.02)

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=2 * REQUEST_SECONDS)


# --- tests -------------------------------------------------------------------------


def test_an_update_through_one_instance_is_never_served_stale_by_the_other(
    cluster: Cluster,
) -> None:
    a, b = cluster.instances
    with httpx.Client(timeout=REQUEST_SECONDS) as http:
        _, tokens = sign_up(http, a, "stale")
        owner = auth_headers(tokens["access_token"])
        created = http.post(f"{a.api}/videos", json={"title": "Take 0"}, headers=owner)
        video = assert_ok(created, status=201)
        path = f"/videos/{video['id']}"
        version = video["version"]
        for take in range(1, 5):
            # The reader reads twice: the first read fills the shared cache, the
            # second is served from it; only an invalidation can make it reload.
            writer, reader = (a, b) if take % 2 else (b, a)
            for _ in range(2):
                assert title_on(http, reader, path, owner) == f"Take {take - 1}"
            assert cached_entries(cluster, video["id"]), f"{reader.name} did not cache the video"
            if take < 4:
                change = {"title": f"Take {take}", "version": version}
                updated = assert_ok(http.patch(writer.api + path, json=change, headers=owner))
            else:
                whole = {"title": f"Take {take}", "script": "Hello", "version": version}
                updated = assert_ok(http.put(writer.api + path, json=whole, headers=owner))
            version = updated["version"]
            assert title_on(http, reader, path, owner) == f"Take {take}"
            assert title_on(http, writer, path, owner) == f"Take {take}"
        # A version read through one instance is stale once the other has written.
        stale = {"title": "Late", "version": version - 1}
        assert_error(http.patch(b.api + path, json=stale, headers=owner), status=409)

        assert title_on(http, b, path, owner) == "Take 4"
        assert http.delete(a.api + path, headers=owner).status_code == 204
        for instance in (b, b, a):  # the second read on b answers from the cached "not found"
            assert_error(http.get(instance.api + path, headers=owner), status=404)


def test_a_token_revoked_through_one_instance_is_refused_by_the_other(cluster: Cluster) -> None:
    a, b = cluster.instances
    with httpx.Client(timeout=REQUEST_SECONDS) as http:
        email, tokens = sign_up(http, a, "revoked")
        access = auth_headers(tokens["access_token"])
        for instance in (a, b):
            assert assert_ok(http.get(f"{instance.api}/users/me", headers=access))["email"] == email

        logout = http.post(
            f"{a.api}/auth/logout", json={"refresh_token": tokens["refresh_token"]}, headers=access
        )
        assert logout.status_code == 204, logout.text

        for instance in (b, a):
            refused = http.get(f"{instance.api}/users/me", headers=access)
            assert_error(refused, status=401)
            assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        refresh = http.post(
            f"{b.api}/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert_error(refresh, status=401, code="invalid_token")  # logged out, not reused

        # A refresh token spent through b is spent for a as well, and its replay
        # through a revokes the pair b issued, on both instances.
        fresh = log_in(http, b, email)
        spent = http.post(f"{b.api}/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
        issued = assert_ok(spent)
        replay = http.post(f"{a.api}/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
        assert_error(replay, status=401, code="refresh_token_reused")
        for instance in (a, b):
            me = http.get(f"{instance.api}/users/me", headers=auth_headers(issued["access_token"]))
            assert_error(me, status=401, code="invalid_token")


def test_both_instances_serve_while_redis_is_killed_and_restarted(outage_cluster: Cluster) -> None:
    cluster = outage_cluster
    server = cluster.redis_server
    assert server is not None
    a, b = cluster.instances
    take = 0

    def committed() -> int:
        return take

    with httpx.Client(timeout=REQUEST_SECONDS) as http:
        email, tokens = sign_up(http, a, "outage")
        owner = auth_headers(tokens["access_token"])
        spare = auth_headers(log_in(http, b, email)["access_token"])
        video = assert_ok(
            http.post(f"{a.api}/videos", json={"title": "Take 0"}, headers=owner), status=201
        )
        path = f"/videos/{video['id']}"
        version = video["version"]

        def update(writer: Instance, reader: Instance) -> None:
            nonlocal take, version
            change = {"title": f"Take {take + 1}", "version": version}
            version = assert_ok(http.patch(writer.api + path, json=change, headers=owner))[
                "version"
            ]
            take += 1
            assert title_on(http, reader, path, owner) == f"Take {take}"

        traffic = Traffic([a, b], path, owner, committed)
        traffic.start()
        try:
            traffic.wait_for(30)
            assert cached_entries(cluster, video["id"])

            server.stop()  # SIGKILL, mid-traffic
            killed = time.monotonic()
            wait_for_cache(http, [a, b], "unavailable")
            # Writes and reads go on, answered from the database.
            update(a, b)
            update(b, a)
            # Revoking needs the shared store: refused, documented, and nothing half done.
            refused = http.post(f"{a.api}/auth/logout", headers=spare)
            assert_error(refused, status=503, code="service_unavailable")
            assert_ok(http.get(f"{b.api}/users/me", headers=spare))
            traffic.wait_for(30)

            server.start()
            restarted = time.monotonic()
            wait_for_cache(http, [a, b], "ok")
            # Invalidations reach the other instance again.
            for writer, reader in ((a, b), (b, a)):
                for _ in range(2):
                    assert title_on(http, reader, path, owner) == f"Take {take}"
                assert cached_entries(cluster, video["id"])
                update(writer, reader)
            logout = http.post(f"{a.api}/auth/logout", headers=spare)
            assert logout.status_code == 204, logout.text
            assert_error(http.get(f"{b.api}/users/me", headers=spare), status=401)
            traffic.wait_for(30)
        finally:
            traffic.stop()
    assert traffic.failures == [], "\n".join(traffic.failures[:20])
    assert traffic.sent_between(killed, restarted) >= 30
    assert traffic.sent_between(restarted, time.monotonic()) >= 30
