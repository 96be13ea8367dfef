"""``heygen-conventions`` console script.

    heygen-conventions check myapp.main:app          # readable table
    heygen-conventions check myapp.main:app --format json
    heygen-conventions check --list-rules

Exit status of ``check``: 0 when nothing at ``--fail-on`` severity (default
``error``) was found, 1 when something was, 2 for a usage error or a target
that cannot be imported.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from heygen_conventions._version import __version__

EXIT_CLEAN = 0
EXIT_VIOLATIONS = 1
EXIT_USAGE = 2


def _build_parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser(prog="heygen-conventions")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="command")
    check = commands.add_parser(
        "check",
        help="check a FastAPI application against the API conventions",
        description="Check a FastAPI application against the API conventions. Exit status: "
        "0 clean, 1 violations at --fail-on severity, 2 usage or import error.",
    )
    check.add_argument(
        "target",
        nargs="?",
        help="the application as module:attribute, e.g. examples.video_app.main:app "
        "(imported with the current directory on sys.path; attribute defaults to 'app')",
    )
    check.add_argument("--format", choices=("table", "json"), default="table")
    check.add_argument(
        "--select",
        action="append",
        metavar="RULES",
        help="check only these rules: comma-separated ids, names or id prefixes (HC1)",
    )
    check.add_argument(
        "--ignore",
        action="append",
        metavar="RULES",
        help="skip these rules: comma-separated ids, names or id prefixes",
    )
    check.add_argument(
        "--fail-on",
        choices=("error", "warning"),
        default="error",
        help="lowest severity that makes the exit status 1 (default: error)",
    )
    check.add_argument(
        "--show-ignored", action="store_true", help="list findings that ignores switched off"
    )
    check.add_argument(
        "--factory", action="store_true", help="the target is a callable that returns the app"
    )
    check.add_argument("--list-rules", action="store_true", help="print the rules and exit")
    return parser, check


def _split(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _load_target(target: str, *, factory: bool) -> Any:
    """The object ``module:attribute`` names; raises LookupError with a readable message."""
    from starlette.applications import Starlette
    from starlette.routing import Router

    module_name, _, attribute = target.partition(":")
    attribute = attribute or "app"
    if not module_name:
        raise LookupError(f"{target!r} names no module; use module:attribute, e.g. main:app")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise LookupError(
                f"cannot import {module_name!r}: no module named {exc.name!r}"
            ) from exc
        raise LookupError(f"importing {module_name!r} failed: {exc}") from exc
    except Exception as exc:  # the application's own import-time error
        raise LookupError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
    found: Any = module
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise LookupError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if factory:
        if not callable(found):
            raise LookupError(f"{target!r} is not callable, so --factory cannot call it")
        try:
            found = found()
        except Exception as exc:  # the factory's own error
            raise LookupError(f"calling {target!r} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(found, Starlette | Router):
        hint = " (use --factory if it builds the app)" if callable(found) else ""
        raise LookupError(
            f"{target!r} is a {type(found).__name__}, not a FastAPI application or APIRouter{hint}"
        )
    return found


def _list_rules() -> str:
    from heygen_conventions.checks import RULES

    width = max(len(rule.name) for rule in RULES.values())
    return "\n".join(
        f"{rule.id}  {rule.name:<{width}}  {rule.severity:<7}  {rule.summary}"
        for rule in RULES.values()
    )


def _check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from heygen_conventions.checks import check_app, format_report

    if args.list_rules:
        print(_list_rules())
        return EXIT_CLEAN
    if not args.target:
        parser.error("the target application is required, e.g. myapp.main:app")
    try:
        app = _load_target(args.target, factory=args.factory)
    except LookupError as exc:
        parser.error(str(exc))
    ignore = _split(args.ignore)
    try:
        violations = check_app(
            app,
            select=_split(args.select),
            ignore=dict.fromkeys(ignore or (), "--ignore on the command line"),
            include_ignored=True,
        )
    except ValueError as exc:
        parser.error(str(exc))
    except Exception as exc:  # the app's own failure (its OpenAPI document), not a finding
        parser.error(f"checking {args.target!r} failed: {type(exc).__name__}: {exc}")
    active = [v for v in violations if v.ignored_reason is None]
    if args.format == "json":
        errors = sum(v.severity == "error" for v in active)
        report = {
            "violations": [v.to_dict() for v in active],
            "ignored": [v.to_dict() for v in violations if v.ignored_reason is not None],
            "summary": {"errors": errors, "warnings": len(active) - errors},
        }
        print(json.dumps(report, indent=2))
    else:
        shown = violations if args.show_ignored else active
        report_text = format_report(shown)
        hidden = len(violations) - len(shown)
        if hidden:
            report_text += f" ({hidden} ignored; --show-ignored lists them)"
        print(report_text)
    failing = {"error"} if args.fail_on == "error" else {"error", "warning"}
    return EXIT_VIOLATIONS if any(v.severity in failing for v in active) else EXIT_CLEAN


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser, check_parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "check":
        return _check(args, check_parser)
    parser.print_help()
    return EXIT_CLEAN


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
