"""``heygen-conventions`` console script."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from heygen_conventions._version import __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="heygen-conventions")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
