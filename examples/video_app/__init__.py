"""A HeyGen-style video platform built only from heygen_conventions.

Users register and log in (JWT access and refresh tokens), create videos from
admin-managed templates, have them rendered in the background and read their
analytics. Every route lives under ``/api/v1`` and answers in the library's
envelope; the same code runs on SQLite with an in-process cache or on
PostgreSQL with Redis, chosen by ``HEYGEN_*`` environment variables.

Run it with ``make demo`` (or ``python -m examples.video_app``); the
application object is ``examples.video_app.main:app``.
"""
