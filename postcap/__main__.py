"""``python -m postcap``: print the version or point at ``twistd postcap``."""

from __future__ import annotations

import sys

from postcap._version import __version__


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args in (["--version"], ["-V"]):
        print(f"postcap {__version__}")
        return 0
    print(
        "usage: python -m postcap --version\n"
        "run the server with: twistd -n postcap --port 5555 (see twistd postcap --help)",
        file=sys.stderr if args else sys.stdout,
    )
    return 2 if args else 0


if __name__ == "__main__":
    raise SystemExit(main())
