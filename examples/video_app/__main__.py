"""Run the video platform: ``python -m examples.video_app [command] [options]``.

    python -m examples.video_app                  # migrate, seed, serve on 127.0.0.1:8000
    python -m examples.video_app --no-seed --port 8001
    python -m examples.video_app migrate          # only bring the schema up to date
    python -m examples.video_app seed             # only add the missing demo data

Configuration comes from ``HEYGEN_*`` environment variables: with
``HEYGEN_DATABASE_URL=postgresql+asyncpg://...`` and ``HEYGEN_REDIS_URL=redis://...``
it runs on PostgreSQL and Redis, unchanged.
"""

import argparse
import asyncio
import sys
from collections.abc import Sequence

from sqlalchemy import make_url

from examples.video_app.main import API_PREFIX, TOKEN_URL, create_app
from examples.video_app.migrate import upgrade_database
from examples.video_app.seed import seed
from examples.video_app.settings import DEMO_ADMIN_PASSWORD, VideoAppSettings
from heygen_conventions import Database, configure_logging_from_settings, uvicorn_log_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m examples.video_app", description="The example video platform API."
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=("serve", "migrate", "seed"),
        default="serve",
        help="serve (default: migrate, seed, then serve), migrate or seed",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument("--no-seed", action="store_true", help="do not add the demo data")
    parser.add_argument(
        "--no-migrate", action="store_true", help="do not migrate (another process does)"
    )
    return parser


async def _prepare(settings: VideoAppSettings, *, migrate: bool, add_demo_data: bool) -> None:
    database = Database.from_settings(settings)
    try:
        if migrate:
            await upgrade_database(database)
        if add_demo_data:
            await seed(database, settings)
    finally:
        await database.dispose()


def _banner(settings: VideoAppSettings, host: str, port: int) -> str:
    base = f"http://{host}:{port}"
    password = settings.demo_admin_password.get_secret_value()
    shown = password if password == DEMO_ADMIN_PASSWORD else "$HEYGEN_DEMO_ADMIN_PASSWORD"
    return (
        f"\nVideo platform API on {base}{API_PREFIX}\n"
        f"  docs:     {base}/docs   (Authorize: {settings.demo_admin_email} / {shown})\n"
        f"  database: {make_url(settings.database_url).render_as_string(hide_password=True)}\n"
        f"  cache:    {'Redis' if settings.redis_url else 'in-process'}\n"
        "  get a token:\n"
        f"    curl -s -X POST {base}{TOKEN_URL} "
        f"-d 'username={settings.demo_admin_email}' -d 'password={shown}'\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    arguments = _parser().parse_args(argv)
    settings = VideoAppSettings()
    configure_logging_from_settings(settings)
    if arguments.command in ("migrate", "seed"):
        asyncio.run(
            _prepare(
                settings,
                migrate=arguments.command == "migrate",
                add_demo_data=arguments.command == "seed",
            )
        )
        return 0
    asyncio.run(
        _prepare(settings, migrate=not arguments.no_migrate, add_demo_data=not arguments.no_seed)
    )
    import uvicorn

    print(_banner(settings, arguments.host, arguments.port), file=sys.stderr, flush=True)
    uvicorn.run(
        create_app(settings),
        host=arguments.host,
        port=arguments.port,
        log_config=uvicorn_log_config(
            level=settings.log_level,
            json={"json": True, "console": False}.get(settings.log_format),
            service=settings.app_name,
        ),
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
