"""Command-line interface (placeholder until the engine lands)."""

import sys


def main() -> int:
    """Run the CLI."""
    print("not implemented yet", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
