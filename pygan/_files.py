"""Opening the files pygan reads (checkpoints, IDX data) safely: regular files only, so that a named
pipe, a device or a folder given by mistake is refused at once instead of blocking or streaming
without end; and naming temporary files so that concurrent writers never remove each other's."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Any, BinaryIO, Iterator

_KINDS = {stat.S_ISDIR: "a folder", stat.S_ISFIFO: "a named pipe", stat.S_ISCHR: "a character device",
          stat.S_ISBLK: "a block device", stat.S_ISSOCK: "a socket"}


def open_regular(path: Path) -> tuple[BinaryIO, int]:
    """Open ``path`` for reading if it is a regular file; return the file and its size in bytes.

    Raises OSError (with ``strerror`` saying what the path is) for anything else. The open itself
    cannot block: it is made non-blocking (a FIFO with no writer would wait forever) and the kind
    is checked on the open descriptor, so the file cannot be swapped between check and read.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in _KINDS.items() if test(st.st_mode)), "not a regular file")
            raise OSError(0, f"{kind}, not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), st.st_size
    except BaseException:
        os.close(fd)
        raise


def temp_prefix(target: Path) -> str:
    """The prefix of this process's temporary files for ``target`` (``.<name>.<pid>.``)."""
    return f".{target.name}.{os.getpid()}."


def remove_stale_temps(target: Path, suffix: str) -> None:
    """Remove temporary files for ``target`` left by writers that no longer run (same host); those
    of live processes, this one's included, are kept."""
    for tmp in target.parent.glob(f".{target.name}.*{suffix}"):
        pid_text = tmp.name[len(target.name) + 2 :].split(".", 1)[0]
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except (PermissionError, OverflowError):
            continue


@contextlib.contextmanager
def atomic_write(target: Path, text: bool = False, fsync: bool = False) -> Iterator[IO[Any]]:
    """Write ``target`` atomically: the block writes a temporary file beside it (named for this
    process, with the ordinary permissions a new file gets, not mkstemp's 0600), which replaces
    ``target`` when the block ends (flushed to disk first if ``fsync``) and is removed if it fails."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=temp_prefix(target), suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w" if text else "wb") as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process's umask, read without changing it where the system shows it (Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: read by setting (briefly process-wide)
    os.umask(mask)
    return mask
