"""What the server does to its process before it serves: file permissions and the
file-descriptor limit.

- **Permissions.** Captured traffic, the CA key and the control token are secrets of
  the user who runs postcap.  :func:`restrict_file_modes` sets the umask to ``0o077``
  so every file postcap (and SQLite, and twistd's log) creates is ``0600`` and every
  directory ``0700``; :func:`secure_data_dir` creates the data dir ``0700``, tightens
  an existing looser one and the files already in it, and says so in the log.
- **File descriptors.** :func:`raise_fd_limit` raises the soft ``RLIMIT_NOFILE`` to
  the hard limit; :func:`default_max_connections` keeps the proxy's connections
  below it with :data:`RESERVED_FDS` left for the control channel, the database and
  the spool.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from twisted.logger import Logger

_log = Logger(namespace="postcap.startup")

#: File descriptors kept out of the proxy's reach: control channel connections,
#: the history database (child process pipes, WAL files), spool files, logs.
RESERVED_FDS = 64
#: Each proxy client connection may hold an upstream connection too.
FDS_PER_CONNECTION = 2
#: The least the global connection cap goes down to on a tiny limit.
MIN_CONNECTIONS = 16
#: Sub-directories of the data dir whose files are tightened with it.
PRIVATE_SUBDIRS = ("ca", "spool")


def restrict_file_modes() -> int:
    """``umask 077`` for the rest of the process; returns the previous umask."""
    return os.umask(0o077)


def secure_data_dir(path: str) -> list[str]:
    """Create ``path`` (0700) or tighten it and what postcap keeps in it to owner-only;
    returns what was tightened (also logged).  Only entries owned by this user are
    changed: a data dir handed over by someone else is left alone with a warning."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    tightened: list[str] = []
    if not _tighten(path, 0o700, tightened):
        return tightened
    for directory in (path, *(os.path.join(path, sub) for sub in PRIVATE_SUBDIRS)):
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        if directory != path:
            _tighten(directory, 0o700, tightened)
        for name in names:
            entry = os.path.join(directory, name)
            try:
                info = os.lstat(entry)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                _tighten(entry, 0o600, tightened, info)
    return tightened


def _tighten(path: str, mode: int, tightened: list[str], info: Any = None) -> bool:
    """Drop group/other bits of ``path``; False when it is someone else's."""
    try:
        info = info or os.stat(path)
        if info.st_uid != os.geteuid():
            _log.warn("{path} belongs to uid {uid}, not to postcap's user: its permissions "
                      "are left as they are", path=path, uid=info.st_uid)
            return False
        current = stat.S_IMODE(info.st_mode)
        if current & 0o077:
            os.chmod(path, current & mode)
            _log.info("tightened permissions of {path} from {old:04o} to {new:04o}",
                      path=path, old=current, new=current & mode)
            tightened.append(path)
    except OSError as exc:
        _log.warn("cannot tighten permissions of {path}: {error}", path=path, error=exc.strerror)
    return True


def raise_fd_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit (logged); returns the soft
    limit now in force."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or (wanted != resource.RLIM_INFINITY and soft >= wanted):
        _log.info("file descriptor limit {limit}", limit=soft)
        return soft if soft != resource.RLIM_INFINITY else 1 << 20
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError) as exc:
        _log.warn("cannot raise the file descriptor limit from {soft} to {hard}: {error}",
                  soft=soft, hard=wanted, error=exc)
        return soft
    _log.info("raised the file descriptor limit from {soft} to {limit}", soft=soft, limit=wanted)
    return wanted


def default_max_connections(fd_limit: int) -> int:
    """The proxy's global connection cap for ``fd_limit`` descriptors:
    ``(limit - RESERVED_FDS) // 2`` (a client connection and its upstream one)."""
    return max(MIN_CONNECTIONS, (fd_limit - RESERVED_FDS) // FDS_PER_CONNECTION)
