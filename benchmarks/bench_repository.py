"""Repository and pagination against hand-written SQLAlchemy, on PostgreSQL.

    .venv/bin/python -m benchmarks.bench_repository [--url URL] [--rounds 5]

Builds (once, then reuses) a schema ``bench_repository`` holding a table of
1,000,000 videos, 70% of them ``published``, indexed on ``(created_at, id)``,
made with one ``INSERT ... SELECT FROM generate_series``. Each comparison
runs its contenders interleaved, ``--rounds`` times, and prints the median of
the per-round ratios (contender time / baseline time; below 1 is faster).
Each timed call starts after a full garbage collection, so none pays for
another's garbage; the collections its own allocations cause are counted.
``--drop`` removes the schema.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Index, MetaData, String, event, func, insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Mapped, mapped_column

from heygen_conventions import (
    Base,
    BaseRepository,
    Database,
    PageParams,
    TimestampMixin,
    UUIDPrimaryKeyMixin,
)

SCHEMA = "bench_repository"
TABLE_ROWS = 1_000_000
DEPTH = 500_000
PER_PAGE = 20


class BenchBase(Base):
    __abstract__ = True
    metadata = MetaData()


class BenchVideo(UUIDPrimaryKeyMixin, TimestampMixin, BenchBase):
    __tablename__ = "bench_videos"
    __table_args__ = (Index("ix_bench_videos_created_at_id", "created_at", "id"),)
    title: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(20))
    views: Mapped[int]


class BenchWrite(UUIDPrimaryKeyMixin, TimestampMixin, BenchBase):
    """Same shape, emptied before each insert or upsert contender."""

    __tablename__ = "bench_writes"
    title: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(20))
    views: Mapped[int]


class VideoRepository(BaseRepository[BenchVideo]):
    sortable_fields = ("created_at", "title")


class WriteRepository(BaseRepository[BenchWrite]):
    pass


Timed = Callable[[], Awaitable[Any]]


async def timed(fn: Timed, repeat: int = 1) -> float:
    gc.collect()
    started = time.perf_counter()
    for _ in range(repeat):
        await fn()
    return (time.perf_counter() - started) / repeat


async def compare(
    title: str,
    baseline: tuple[str, Timed],
    contenders: list[tuple[str, Timed]],
    *,
    rounds: int,
    repeat: int = 1,
    before: Timed | None = None,
) -> dict[str, float]:
    """Median over rounds of contender/baseline; contenders interleaved with the baseline."""
    ratios: dict[str, list[float]] = {name: [] for name, _ in contenders}
    base_times: list[float] = []
    for _ in range(rounds):
        if before:
            await before()
        base = await timed(baseline[1], repeat)
        base_times.append(base)
        for name, fn in contenders:
            if before:
                await before()
            ratios[name].append(await timed(fn, repeat) / base)
    print(f"\n{title}")
    print(f"  {baseline[0]:<58} 1.00  ({statistics.median(base_times) * 1000:.2f} ms)")
    result = {}
    for name, values in ratios.items():
        result[name] = statistics.median(values)
        spread = ""
        if len(values) >= 4:  # the middle half of the rounds' ratios
            low, _, high = statistics.quantiles(values, n=4)
            spread = f"  (middle half of rounds {low:.2f}-{high:.2f})"
        print(f"  {name:<58} {result[name]:.2f}{spread}")
    return result


async def ensure_table(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
        await conn.run_sync(BenchBase.metadata.create_all)
        rows = await conn.scalar(select(func.count()).select_from(BenchVideo))
    if rows == TABLE_ROWS:
        return
    print(f"building {TABLE_ROWS:,} rows in {SCHEMA}.bench_videos (once) ...")
    started = time.perf_counter()
    async with db.engine.begin() as conn:
        await conn.execute(text("TRUNCATE bench_videos"))
        await conn.execute(
            text(
                """
                INSERT INTO bench_videos (id, title, slug, status, views, created_at, updated_at)
                SELECT gen_random_uuid(), 'Video ' || n, 'video-' || n,
                       CASE WHEN n % 10 < 7 THEN 'published' ELSE 'draft' END,
                       n % 1000,
                       timestamptz '2024-01-01' + n * interval '1 second',
                       timestamptz '2024-01-01' + n * interval '1 second'
                FROM generate_series(1, :rows) AS n
                """
            ),
            {"rows": TABLE_ROWS},
        )
    async with db.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE bench_videos"))
    print(f"built in {time.perf_counter() - started:.1f} s")


def new_rows(count: int, prefix: str) -> list[dict[str, Any]]:
    return [
        {"title": f"{prefix} {n}", "slug": f"{prefix}-{n}", "status": "draft", "views": n}
        for n in range(count)
    ]


async def bench_inserts(db: Database, rounds: int) -> None:
    table = BenchWrite.__table__

    async def empty() -> None:
        async with db.engine.begin() as conn:
            await conn.execute(text("TRUNCATE bench_writes"))

    async def core() -> None:
        async with db.transaction() as session:
            await session.execute(insert(table), new_rows(10_000, "core"))

    async def create_many() -> None:
        async with db.transaction() as session:
            await WriteRepository(session).create_many(new_rows(10_000, "repo"))

    async def insert_many() -> None:
        async with db.transaction() as session:
            await WriteRepository(session).insert_many(new_rows(10_000, "bulk"))

    async def add_all() -> None:
        async with db.transaction() as session:
            session.add_all([BenchWrite(**row) for row in new_rows(10_000, "orm")])

    await compare(
        "Insert 10,000 rows",
        ("Core insert() executemany (SQLAlchemy fills the defaults)", core),
        [
            ("repo.create_many() (returns the ORM objects)", create_many),
            ("repo.insert_many() (reads nothing back)", insert_many),
            ("ORM add_all + flush", add_all),
        ],
        rounds=rounds,
        before=empty,
    )

    async def one_by_one() -> None:
        async with db.transaction() as session:
            for row in new_rows(10_000, "single"):
                session.add(BenchWrite(**row))
                await session.flush()

    # Row by row takes seconds: at most three rounds, against the same baseline.
    await compare(
        "Insert 10,000 rows, row by row (at most three rounds)",
        ("repo.create_many()", create_many),
        [("session.add() + flush() per row", one_by_one)],
        rounds=min(rounds, 3),
        before=empty,
    )


async def bench_get_by_id(db: Database, rounds: int) -> None:
    async with db.session() as session:
        ids = list((await session.scalars(select(BenchVideo.id).limit(500))).all())
    position = 0

    def next_id() -> uuid.UUID:
        nonlocal position
        position = (position + 1) % len(ids)
        return ids[position]

    async def raw() -> None:
        async with db.session() as session:
            assert await session.get(BenchVideo, next_id()) is not None

    async def repo() -> None:
        async with db.session() as session:
            assert await VideoRepository(session).get_by_id(next_id()) is not None

    await compare(
        "get_by_id in a fresh session (mean of 300 calls per round)",
        ("session.get(Model, id)", raw),
        [("repo.get_by_id(id)", repo)],
        rounds=rounds,
        repeat=300,
    )


async def bench_pages(db: Database, rounds: int) -> None:
    async with db.session() as session:
        repo = VideoRepository(session)
        deep_row = (
            await repo.list(order_by="-created_at", offset=DEPTH, limit=1, status="published")
        )[0]
        keys = repo._sort_keys("-created_at")
        codec = repo._cursor_codec(keys, repo._where([], {"status": "published"}))
        deep_cursor = codec.encode([deep_row.created_at, deep_row.id], backwards=False)

    async def seed_two_queries(page: int) -> None:
        # The conventions guide's get_videos_paginated: count, then OFFSET.
        async with db.session() as session:
            await session.scalar(
                select(func.count(BenchVideo.id)).where(BenchVideo.status == "published")
            )
            await session.scalars(
                select(BenchVideo)
                .where(BenchVideo.status == "published")
                .order_by(BenchVideo.created_at.desc(), BenchVideo.id.desc())
                .offset((page - 1) * PER_PAGE)
                .limit(PER_PAGE)
            )

    async def paginate(page: int, count: Any) -> None:
        async with db.session() as session:
            params = PageParams(
                page=page, per_page=PER_PAGE, sort_by="created_at", sort_order="desc"
            )
            await VideoRepository(session).paginate(params, count=count, status="published")

    async def keyset(cursor: str | None) -> None:
        async with db.session() as session:
            page = await VideoRepository(session).paginate_cursor(
                cursor=cursor, limit=PER_PAGE, sort="-created_at", status="published"
            )
            assert len(page.data) == PER_PAGE

    deep_page = DEPTH // PER_PAGE + 1
    await compare(
        "Page 1 of 700,000 matching rows (1,000,000 in the table)",
        ("seed pattern: count(*) query + OFFSET query", lambda: seed_two_queries(1)),
        [
            ('repo.paginate(count="exact")', lambda: paginate(1, "exact")),
            ('repo.paginate(count="none")', lambda: paginate(1, "none")),
            ('repo.paginate(count="estimate")', lambda: paginate(1, "estimate")),
            ("repo.paginate_cursor() first page", lambda: keyset(None)),
        ],
        rounds=rounds,
    )
    await compare(
        f"Depth {DEPTH:,} (page {deep_page:,})",
        ("repo.paginate_cursor() first page", lambda: keyset(None)),
        [
            (f"repo.paginate_cursor() at depth {DEPTH:,}", lambda: keyset(deep_cursor)),
            (
                f'repo.paginate(count="exact") at depth {DEPTH:,}',
                lambda: paginate(deep_page, "exact"),
            ),
            (
                f'repo.paginate(count="none") at depth {DEPTH:,}',
                lambda: paginate(deep_page, "none"),
            ),
        ],
        rounds=rounds,
    )


async def bench_upserts(db: Database, rounds: int) -> None:
    table = BenchWrite.__table__
    rows = new_rows(10_000, "up")  # half of them exist before each contender runs

    async def prepare() -> None:
        async with db.engine.begin() as conn:
            await conn.execute(text("TRUNCATE bench_writes"))
        async with db.transaction() as session:
            await WriteRepository(session).create_many(rows[::2])

    async def core() -> None:
        statement = pg_insert(table)
        statement = statement.on_conflict_do_update(
            index_elements=["slug"],
            set_={
                "title": statement.excluded.title,
                "status": statement.excluded.status,
                "views": statement.excluded.views,
                "updated_at": statement.excluded.updated_at,
            },
        )
        async with db.transaction() as session:
            await session.execute(statement, [{**r, "title": r["title"] + "!"} for r in rows])

    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    async def repo() -> None:
        async with db.transaction() as session:
            result = await WriteRepository(session).upsert_many(
                [{**r, "title": r["title"] + "?"} for r in rows], on="slug"
            )
            assert (result.created, result.updated) == (5_000, 5_000)

    async def repo_counts() -> None:
        async with db.transaction() as session:
            result = await WriteRepository(session).upsert_many(
                [{**r, "title": r["title"] + "#"} for r in rows], on="slug", returning=False
            )
            assert (result.created, result.updated) == (5_000, 5_000)

    await compare(
        "Upsert 10,000 rows (5,000 new, 5,000 existing)",
        ("Core INSERT ... ON CONFLICT DO UPDATE executemany", core),
        [
            ("repo.upsert_many() (ORM objects, created/updated counts)", repo),
            ("repo.upsert_many(returning=False) (counts only)", repo_counts),
        ],
        rounds=rounds,
        before=prepare,
    )
    await prepare()
    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    await repo()
    event.remove(db.engine.sync_engine, "before_cursor_execute", record)
    upserts = [s for s in statements if "ON CONFLICT" in s]
    print(f"  upsert_many statements for 10,000 rows: {len(upserts)} (batches of at most 5,000)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--drop", action="store_true", help=f"drop the {SCHEMA} schema and exit")
    parser.add_argument(
        "--only", choices=["inserts", "get", "pages", "upserts"], help="one part only"
    )
    args = parser.parse_args()
    db = Database(
        args.url,
        connect_args={"server_settings": {"search_path": SCHEMA}},
        cursor_secret="bench-secret-bench-secret-bench-secret",
    )
    try:
        if args.drop:
            async with db.engine.begin() as conn:
                await conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
            return
        await ensure_table(db)
        parts: dict[str, Callable[[Database, int], Awaitable[None]]] = {
            "inserts": bench_inserts,
            "get": bench_get_by_id,
            "pages": bench_pages,
            "upserts": bench_upserts,
        }
        for name, part in parts.items():
            if args.only in (None, name):
                await part(db, args.rounds)
    finally:
        await db.dispose()


if __name__ == "__main__":
    asyncio.run(main())
