"""``postcap``: ``postcap serve``, ``postcap run -- COMMAND``, ``postcap mcp``,
``postcap --version``.

``postcap serve OPTIONS`` is ``twistd -n --pidfile= postcap OPTIONS``: the server in the
foreground, logging to stdout, without a ``twistd.pid`` file (see ``twistd postcap --help``).
"""

from __future__ import annotations

import os
import shutil
import sys

from postcap._version import __version__

USAGE = """usage: postcap serve [OPTIONS...]   (the server; OPTIONS as for twistd postcap --help)
       postcap run [--name NAME] [--data-dir DIR] [--control ENDPOINT] -- COMMAND [ARGS...]
       postcap mcp [--data-dir DIR] [--control ENDPOINT]
       postcap --version
postcap serve runs: twistd -n --pidfile= postcap OPTIONS"""


def twistd_argv(options: list[str]) -> list[str]:
    """The command ``postcap serve`` becomes: this environment's ``twistd``, in the
    foreground, with no pid file, running the postcap plugin with ``options``."""
    twistd = shutil.which("twistd", path=os.path.dirname(sys.executable))
    head = [twistd] if twistd else [sys.executable, "-c",
                                    "from twisted.scripts.twistd import run; run()"]
    return [*head, "-n", "--pidfile=", "postcap", *options]


def serve(options: list[str]) -> int:
    argv = twistd_argv(options)
    os.execv(argv[0], argv)
    return 1  # pragma: no cover - execv does not return


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args in (["--version"], ["-V"]):
        print(f"postcap {__version__}")
        return 0
    if args[:1] == ["serve"]:
        return serve(args[1:])
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
