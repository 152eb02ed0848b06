"""Files and folders only the server's own account can open.

The data directory holds health information (the database, the recordings), and a
backup holds the same: nothing in either may be open to the machine's other
accounts, whatever the umask the server was started with. Each process the server
is (serve, each command, the composer) starts with `restrict_umask`, and what
creates a file or a folder there also asks for owner-only modes itself, so that the
application factory used without the command line (tests, benchmarks) is no less
private.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

FILE_MODE: Final = 0o600
DIRECTORY_MODE: Final = 0o700
# The permission bits of the group and of everyone else.
OPEN_TO_OTHERS: Final = 0o077


def restrict_umask() -> None:
    """From now on, whatever this process (and any it starts) creates is its owner's
    only, even where a library creates it (SQLite's journals, FFmpeg's files)."""
    os.umask(OPEN_TO_OTHERS)


def owner_only_directory(path: Path) -> Path:
    """`path` as a directory only its owner can open: created with any missing
    parents (each owner-only, unlike `mkdir -p`), or tightened if it is ours."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=DIRECTORY_MODE, exist_ok=True)
    status = path.stat()
    if status.st_mode & OPEN_TO_OTHERS and status.st_uid == os.geteuid():
        path.chmod(stat.S_IMODE(status.st_mode) & ~OPEN_TO_OTHERS)
    return path


def create_owner_only_file(path: Path) -> None:
    """`path` created empty for its owner only when missing; an existing file is left
    as it is. A library that then opens it to write (SQLite, FFmpeg) keeps its mode."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))


def open_to_others(root: Path) -> list[Path]:
    """`root` and everything under it that the group or other accounts may open, in
    walking order (symbolic links, whose own mode means nothing, are not counted)."""
    if not root.exists():
        return []
    found = [root] if root.stat().st_mode & OPEN_TO_OTHERS else []
    for folder, directories, files in os.walk(root):
        for name in sorted(directories) + sorted(files):
            path = Path(folder, name)
            try:
                mode = path.lstat().st_mode
            except FileNotFoundError:
                continue  # removed meanwhile (a recording deleted)
            if not stat.S_ISLNK(mode) and mode & OPEN_TO_OTHERS:
                found.append(path)
    return found
