"""Logging costs against baselines measured in the same run.

1. One JSON event to /dev/null through configure_logging's pipeline vs the
   standard library with a ``json.dumps`` formatter (target: ratio <= 1.0).
2. A filtered-out ``debug`` call on a module-level ``get_logger()`` logger
   (target: <= 1 microsecond).
3. RequestContextMiddleware (id, context, header, access line) per request
   on a trivial FastAPI endpoint vs no middleware (target: <= 10% overhead),
   beside a floor: the least such a middleware can do. Measured in process
   (ASGI calls, no server), then through uvicorn: servers in processes of
   their own (httptools/uvloop when installed, and h11/asyncio), the server's
   CPU time per request read from /proc (Linux), against the same server
   without the middleware and with uvicorn's own access line.

Contenders run interleaved in rounds; each figure is the median over rounds
of the ratio within a round, so machine drift cancels out; beside it, the
middle half of those ratios (first to third quartile).

    .venv/bin/python benchmarks/bench_logging.py [--rounds 15] [--only server] [--processes 6]
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import glob
import importlib.util
import json
import logging
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import structlog
from fastapi import FastAPI

from heygen_conventions import (
    RequestContextMiddleware,
    bind_request_context,
    configure_logging,
    get_logger,
)
from heygen_conventions._context import end_request_context, start_request_context

DEVNULL = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process

FIELDS = {"video_id": "3f1c9a2e-5b7d-4e8f-9a0b-1c2d3e4f5a6b", "duration_ms": 12.5, "attempt": 3}


class StdlibJSONFormatter(logging.Formatter):
    """The baseline: what a team writes by hand with the standard library."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "timestamp": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key in FIELDS:
            if key in record.__dict__:
                payload[key] = record.__dict__[key]
        payload.update(getattr(record, "context", {}))
        return json.dumps(payload, default=str)


def stdlib_baseline() -> logging.Logger:
    logger = logging.getLogger("bench.stdlib")
    logger.handlers.clear()
    handler = logging.StreamHandler(DEVNULL)
    handler.setFormatter(StdlibJSONFormatter())
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def per_call(fn: Callable[[], object], number: int) -> float:
    """Seconds per call of ``fn``, over ``number`` calls."""
    started = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - started) / number


def run_rounds(contenders: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, measure in contenders.items():
            results[name].append(measure())
    return results


def report(title: str, results: dict[str, list[float]], baseline: str, unit: str = "us") -> None:
    print(f"\n{title}")
    base = results[baseline]
    for name, times in results.items():
        ratios = [t / b for t, b in zip(times, base, strict=True)]
        median = statistics.median(times) * 1e6
        shown = f"{median * 1000:8.0f} ns" if unit == "ns" else f"{median:8.2f} us"
        # The middle half of the rounds' ratios: how far one figure can be trusted.
        low, _, high = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
        print(
            f"  {name:58} {shown}   ratio {statistics.median(ratios):5.2f}  ({low:.3f}-{high:.3f})"
        )


def bench_events(rounds: int) -> None:
    number = 20_000
    stdlib = stdlib_baseline()
    configure_logging(level="INFO", json=True, stream=DEVNULL, service="bench")
    ours = get_logger("bench.ours")
    ours_bound = ours.bind()
    routed = logging.getLogger("bench.routed")
    # structlog's documented performance configuration, built without the
    # global config so it does not disturb ours.
    peer = structlog.wrap_logger(
        structlog.BytesLogger(open(os.devnull, "wb")),  # noqa: SIM115
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        context_class=dict,
    ).bind(logger="bench.peer")
    context = {"request_id": "0123456789abcdef", "method": "GET", "path": "/videos"}
    token = start_request_context(**context)
    structlog.contextvars.bind_contextvars(**context)
    try:
        results = run_rounds(
            {
                "stdlib + json.dumps formatter (baseline)": lambda: per_call(
                    lambda: stdlib.info("video created", extra={**FIELDS, "context": context}),
                    number,
                ),
                "get_logger().info(...)": lambda: per_call(
                    lambda: ours.info("video created", **FIELDS), number
                ),
                "get_logger().bind().info(...)": lambda: per_call(
                    lambda: ours_bound.info("video created", **FIELDS), number
                ),
                "stdlib logger routed through the pipeline": lambda: per_call(
                    lambda: routed.info("video created", extra=FIELDS), number
                ),
                "peer: structlog performance config (no redaction)": lambda: per_call(
                    lambda: peer.info("video created", **FIELDS), number
                ),
            },
            rounds,
        )
    finally:
        end_request_context(token)
        structlog.contextvars.clear_contextvars()
    report(
        "One JSON event to /dev/null (request context bound, 3 fields)",
        results,
        "stdlib + json.dumps formatter (baseline)",
    )


def bench_filtered(rounds: int) -> None:
    number = 200_000
    stdlib = stdlib_baseline()
    configure_logging(level="INFO", json=True, stream=DEVNULL)
    ours = get_logger("bench.filtered")
    proxy = structlog.get_logger("bench.proxy")
    results = run_rounds(
        {
            "stdlib logger.debug (baseline)": lambda: per_call(
                lambda: stdlib.debug("skipped"), number
            ),
            "module-level get_logger().debug": lambda: per_call(
                lambda: ours.debug("skipped"), number
            ),
            "peer: structlog.get_logger() proxy .debug": lambda: per_call(
                lambda: proxy.debug("skipped"), number
            ),
            "stdlib logger.debug, extra= 3 fields": lambda: per_call(
                lambda: stdlib.debug("skipped", extra=FIELDS), number
            ),
            "module-level get_logger().debug, 3 keyword fields": lambda: per_call(
                lambda: ours.debug("skipped", video_id="v", duration_ms=1.5, attempt=3), number
            ),
        },
        rounds,
    )
    report("Filtered-out debug call", results, "stdlib logger.debug (baseline)", unit="ns")


class FloorMiddleware:
    """The least any request-context middleware with an access line does: a random
    id, a context variable, the response header and one orjson line written to
    the stream. No redaction, no level, no timestamp, no captures, no lock."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.fd = os.open(os.devnull, os.O_WRONLY)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        request_id = "%032x" % random.getrandbits(128)  # noqa: UP031
        context = {"request_id": request_id, "method": scope["method"], "path": scope["path"]}
        token = FLOOR_CONTEXT.set(context)
        header = (b"x-request-id", request_id.encode())
        status = None

        def send_with_id(message: Any) -> Any:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message["headers"], header]
            return send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            duration = time.perf_counter() - started
            line = {**context, "status_code": status, "duration_ms": duration * 1000}
            os.write(self.fd, orjson.dumps(line) + b"\n")
            FLOOR_CONTEXT.reset(token)


FLOOR_CONTEXT: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "floor", default=None
)


def make_app(with_middleware: bool, **options: Any) -> FastAPI:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/videos/{video_id}")
    async def video(video_id: str) -> dict[str, bool]:
        return {"ok": True}

    @app.get("/me")
    async def me() -> dict[str, bool]:
        bind_request_context(user_id="6f1c2b9e-9a34-4e55-8d7b-0c1e2f3a4b5c")  # as auth does
        return {"ok": True}

    if with_middleware:
        app.add_middleware(RequestContextMiddleware, **options)
    return app


async def call(app: Any, headers: list[tuple[bytes, bytes]], path: str = "/ping") -> None:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    await app(scope, receive, send)


def bench_middleware(rounds: int) -> None:
    number = 2_000
    configure_logging(level="INFO", json=True, stream=DEVNULL)
    bare, wrapped = make_app(False), make_app(True)
    silent = make_app(True, access_log=False)
    floor = make_app(False)
    floor.add_middleware(FloorMiddleware)
    headers = [(b"host", b"bench"), (b"accept", b"*/*")]
    with_id = [*headers, (b"x-request-id", b"req-0123456789")]
    loop = asyncio.new_event_loop()

    def measure(app: Any, request_headers: list[tuple[bytes, bytes]]) -> Callable[[], float]:
        async def many() -> float:
            started = time.perf_counter()
            for _ in range(number):
                await call(app, request_headers)
            return (time.perf_counter() - started) / number

        return lambda: loop.run_until_complete(many())

    for app in (bare, wrapped, silent, floor):  # build the middleware stacks before timing
        loop.run_until_complete(call(app, headers))
    results = run_rounds(
        {
            "trivial endpoint, no middleware (baseline)": measure(bare, headers),
            "RequestContextMiddleware, new id, no access line": measure(silent, headers),
            "RequestContextMiddleware, new id, access line": measure(wrapped, headers),
            "RequestContextMiddleware, incoming id, access line": measure(wrapped, with_id),
            "floor: minimal id + context + header + orjson line": measure(floor, headers),
        },
        rounds,
    )
    report(
        "Per request, ASGI call without a server",
        results,
        "trivial endpoint, no middleware (baseline)",
    )

    # Paths that carry ids are new on every request: the line's values are
    # checked and escaped afresh each time.
    paths = [f"/videos/{uuid.uuid4()}" for _ in range(number)]

    def measure_ids(app: Any) -> Callable[[], float]:
        async def many() -> float:
            started = time.perf_counter()
            for path in paths:
                await call(app, headers, path)
            return (time.perf_counter() - started) / number

        return lambda: loop.run_until_complete(many())

    results = run_rounds(
        {
            "route with an id, no middleware (baseline)": measure_ids(bare),
            "RequestContextMiddleware, new id, access line": measure_ids(wrapped),
            "floor: minimal id + context + header + orjson line": measure_ids(floor),
        },
        rounds,
    )
    report(
        "Per request, a new path each time (/videos/<uuid>), ASGI call without a server",
        results,
        "route with an id, no middleware (baseline)",
    )

    def measure_me(app: Any) -> Callable[[], float]:
        async def many() -> float:
            started = time.perf_counter()
            for _ in range(number):
                await call(app, headers, "/me")
            return (time.perf_counter() - started) / number

        return lambda: loop.run_until_complete(many())

    results = run_rounds(
        {
            "route binding user_id, no middleware (baseline)": measure_me(bare),
            "RequestContextMiddleware, user_id on the access line": measure_me(wrapped),
        },
        rounds,
    )
    loop.close()
    report(
        "Per request, a route binding user_id as the auth dependency does, without a server",
        results,
        "route binding user_id, no middleware (baseline)",
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _cpu_ns(pid: int) -> int:
    """CPU time of every thread of process ``pid`` so far, in ns (Linux schedstat)."""
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        with open(path) as stat:
            total += int(stat.read().split()[0])
    return total


class Server:
    """uvicorn serving ``benchmarks._logging_server:app`` in a process of its own."""

    def __init__(self, variant: str, *, access_log: bool, http: str, loop: str, cpu: int) -> None:
        self.port = _free_port()
        args = [
            sys.executable, "-m", "uvicorn", "benchmarks._logging_server:app",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--http", http, "--loop", loop, "--no-server-header",
            # Each connection idles while the other servers are measured.
            "--timeout-keep-alive", "3600",
        ]  # fmt: skip
        if not access_log:
            args.append("--no-access-log")
        setarch = shutil.which("setarch")
        if setarch:  # no address randomisation: identical servers, identical memory layout
            args = [setarch, platform.machine(), "-R", *args]
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        # One hash seed for every server: otherwise each process lays out its
        # dicts differently, and identical servers differ by several percent.
        env = {**os.environ, "BENCH_VARIANT": variant, "PYTHONHASHSEED": "0"}
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            args, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(self.process.pid, {cpu})
        deadline = time.monotonic() + 20
        while True:
            try:
                self.connection = socket.create_connection(("127.0.0.1", self.port))
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"uvicorn did not start ({variant})") from None
                time.sleep(0.05)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connection.settimeout(10)  # a stuck server fails the run instead of hanging it

    def request(self) -> None:
        """One keep-alive GET /ping, its response read whole."""
        self.connection.sendall(b"GET /ping HTTP/1.1\r\nHost: bench\r\n\r\n")
        data = b""
        while True:
            data += self._receive()
            head, found, body = data.partition(b"\r\n\r\n")
            if found:
                break
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(body) < length:
            body += self._receive()

    def _receive(self) -> bytes:
        chunk = self.connection.recv(65536)
        if not chunk:
            raise RuntimeError("the server closed the connection")
        return chunk

    def close(self) -> None:
        self.connection.close()
        self.process.terminate()
        self.process.wait()


CHUNK = 50  # requests per turn when servers take turns


SERVER_CONTENDERS = {
    "no middleware, no access log (baseline)": ("bare", False),
    "peer: no middleware, uvicorn's own access log": ("bare", True),
    "peer: asgi-correlation-id, no access line": ("correlation-id", False),
    "peer: asgi-correlation-id, id on uvicorn's access line": ("correlation-id-line", True),
    "RequestContextMiddleware, its access line (uvicorn's off)": ("ours", False),
}
# Where the middleware's cost comes from (``--only server-split``).
SPLIT_CONTENDERS = {
    "no middleware, no access log (baseline)": ("bare", False),
    "configure_logging() alone": ("configured", False),
    "a fixed response header alone": ("header", False),
    "floor: minimal id + context + header + orjson line": ("floor", False),
    "RequestContextMiddleware(access_log=False)": ("silent", False),
    "RequestContextMiddleware, its access line": ("ours", False),
}


def between_processes(
    per_process: dict[str, list[float]], baseline: str, resamples: int = 4000
) -> dict[str, tuple[float, float]]:
    """Each contender's ratio to the baseline, 5th to 95th percentile over resampled processes.

    Identical server processes differ by a percent or two in CPU per request
    (where their memory happens to lie), which no number of rounds averages
    out: it moves a run's ratios all together. Drawing each contender's
    processes again with replacement shows how far that alone can move them.
    """
    draw = random.Random(0)
    base = per_process[baseline]
    intervals = {}
    for name, values in per_process.items():
        ratios = sorted(
            statistics.fmean(draw.choices(values, k=len(values)))
            / statistics.fmean(draw.choices(base, k=len(base)))
            for _ in range(resamples)
        )
        intervals[name] = (ratios[resamples // 20], ratios[resamples - 1 - resamples // 20])
    return intervals


def bench_server(
    rounds: int,
    http: str,
    loop: str,
    contenders: dict[str, tuple[str, bool]] = SERVER_CONTENDERS,
    processes: int = 6,
) -> None:
    """Server CPU time per request, uvicorn in its own processes, client in this one.

    CPU time is what a request costs the server (its throughput), and unlike
    latency it does not depend on the client's speed. Each contender runs in
    ``processes`` identical processes whose figures are averaged, and every
    process serves turns of ``CHUNK`` requests in rotation, so the machine's
    own noise falls on all contenders alike. A process's CPU time includes
    what uvicorn does while idle (its 0.1 s tick), the same for every contender.
    """
    if not glob.glob(f"/proc/{os.getpid()}/task/*/schedstat"):
        print("\nPer request through uvicorn: skipped (needs Linux /proc/<pid>/schedstat)")
        return
    if importlib.util.find_spec("asgi_correlation_id") is None:
        print("\n(asgi-correlation-id not installed, its rows left out: pip install -e '.[bench]')")
        contenders = {
            name: contender
            for name, contender in contenders.items()
            if not contender[0].startswith("correlation-id")
        }
    if processes < 1:
        raise SystemExit("--processes must be at least 1")
    # Requests per process and round, whole turns of CHUNK.
    number = max(CHUNK, 6_000 // processes // CHUNK * CHUNK)
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    server_cpu = cpus[-1]
    if len(cpus) > 1:  # the client on another core than the servers
        os.sched_setaffinity(0, set(cpus[:-1]))
    servers = {
        name: [
            Server(variant, access_log=access, http=http, loop=loop, cpu=server_cpu)
            for _ in range(processes)
        ]
        for name, (variant, access) in contenders.items()
    }
    try:
        for group in servers.values():
            for server in group:
                for _ in range(500):  # warm up: imports, caches, the first lines
                    server.request()
        cpu: dict[str, list[float]] = {name: [] for name in servers}
        per_process = {name: [0.0] * processes for name in servers}
        wall: dict[str, list[float]] = {name: [] for name in servers}
        spread: list[float] = []
        everyone = [server for group in servers.values() for server in group]
        for _ in range(rounds):
            # Small turns, every process in each: whatever else the machine does
            # during a round (other tenants, frequency changes) falls on all alike.
            cpu_before = {server: _cpu_ns(server.process.pid) for server in everyone}
            spent = dict.fromkeys(everyone, 0.0)
            for _ in range(number // CHUNK):
                for server in everyone:
                    started = time.perf_counter()
                    for _ in range(CHUNK):
                        server.request()
                    spent[server] += time.perf_counter() - started
            for name, group in servers.items():
                cpu_times = [
                    (_cpu_ns(server.process.pid) - cpu_before[server]) / 1e9 / number
                    for server in group
                ]
                cpu[name].append(statistics.fmean(cpu_times))
                for index, cpu_time in enumerate(cpu_times):
                    per_process[name][index] += cpu_time / rounds
                wall[name].append(statistics.fmean(spent[server] / number for server in group))
                if name.endswith("(baseline)"):
                    spread.append(max(cpu_times) / min(cpu_times))
    finally:
        for group in servers.values():
            for server in group:
                server.close()
        if len(cpus) > 1:
            os.sched_setaffinity(0, set(cpus))
    baseline = next(iter(servers))
    report(
        f"Per request through uvicorn (--http {http} --loop {loop}): server CPU time,"
        f" {processes} processes each",
        cpu,
        baseline,
    )
    report("  the same requests, latency seen by the client", wall, baseline)
    print(
        f"  spread between the baseline's {processes} identical processes (max/min CPU"
        f" per request): median {statistics.median(spread):.3f}"
    )
    print("  server CPU ratio, 90% interval over the processes drawn again:")
    for name, (low, high) in between_processes(per_process, baseline).items():
        if name != baseline:
            print(f"  {name:58}             {low:.3f}-{high:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument(
        "--only",
        choices=["events", "filtered", "middleware", "server", "server-split"],
        help="one part only (server-split: only when asked)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=6,
        help="uvicorn processes per contender through a server (their mean is what counts)",
    )
    parser.add_argument(
        "--split-stack",
        choices=["fastest", "h11"],
        default="fastest",
        help="server-split through httptools + uvloop when installed, or through h11 + asyncio",
    )
    args = parser.parse_args()
    parts: dict[str, Callable[[], None]] = {
        "events": lambda: bench_events(args.rounds),
        "filtered": lambda: bench_filtered(args.rounds),
        "middleware": lambda: bench_middleware(args.rounds),
        "server": lambda: bench_servers(args.rounds, args.processes),
        "server-split": lambda: bench_server(
            args.rounds,
            *(fastest_stack() if args.split_stack == "fastest" else ("h11", "asyncio")),
            SPLIT_CONTENDERS,
            args.processes,
        ),
    }
    for name, part in parts.items():
        if args.only == name or (args.only is None and name != "server-split"):
            part()


def fastest_stack() -> tuple[str, str]:
    """uvicorn's ``--http`` and ``--loop``: httptools and uvloop when installed."""
    try:
        import httptools  # noqa: F401
        import uvloop  # noqa: F401
    except ImportError:
        return "h11", "asyncio"
    return "httptools", "uvloop"


def bench_servers(rounds: int, processes: int) -> None:
    """Through uvicorn with the fast protocol stack when installed, and the pure-Python one."""
    if fastest_stack()[0] == "h11":
        print("\n(httptools/uvloop not installed: uvicorn[standard] measured without them)")
    else:
        bench_server(rounds, "httptools", "uvloop", processes=processes)
    bench_server(rounds, "h11", "asyncio", processes=processes)


if __name__ == "__main__":
    main()
