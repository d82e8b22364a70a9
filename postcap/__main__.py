"""``postcap``: ``postcap run -- COMMAND``, ``postcap mcp``, ``postcap --version``.

The server itself runs with ``twistd -n postcap`` (see ``twistd postcap --help``).
"""

from __future__ import annotations

import sys

from postcap._version import __version__

USAGE = """usage: postcap run [--name NAME] [--data-dir DIR] [--control ENDPOINT] -- COMMAND [ARGS...]
       postcap mcp [--data-dir DIR] [--control ENDPOINT]
       postcap --version
run the server with: twistd -n postcap --port 5555 (see twistd postcap --help)"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args in (["--version"], ["-V"]):
        print(f"postcap {__version__}")
        return 0
    if args[:1] == ["run"]:
        from postcap.run import main as run_main

        return run_main(args[1:])
    if args[:1] == ["mcp"]:
        from postcap.mcp_server import main as mcp_main

        return mcp_main(args[1:])
    print(USAGE, file=sys.stderr if args and args[0] not in ("-h", "--help") else sys.stdout)
    return 2 if args and args[0] not in ("-h", "--help") else 0


if __name__ == "__main__":
    raise SystemExit(main())
