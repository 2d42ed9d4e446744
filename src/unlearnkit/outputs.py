"""Output folders that appear whole or not at all, and that never take a user's files with them.

A command works in `<out>.partial/` and renames it to `<out>` only when everything is written.
Killed runs leave `<out>.partial/` with their Trainer checkpoints, which `--resume` continues;
a run that fails before its first checkpoint leaves nothing behind.

Every folder we create carries a marker file (written first) naming the command, version and time.
`--overwrite` replaces a folder only when it carries that marker or is empty, and never the working
folder, the home folder, `/` or a parent of the working folder: a mistyped `--out` must not be
able to delete a thesis. A run in progress holds an exclusive lock in its `.partial` folder, so a
second command on the same `--out` is refused while the first lives; the operating system drops the
lock when a process dies (even by `kill -9`), so a stale lock is simply taken over.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from unlearnkit.distributed import is_main_process, wait_for_everyone
from unlearnkit.errors import UnlearnkitError

MARKER = ".unlearnkit-output.json"
LOCK = ".unlearnkit.lock"


def partial_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    if not out.name:  # ".", "/" or "..": name the folder so the checks below can refuse it
        out = out.resolve()
    return out.with_name(out.name + ".partial")


def _has_checkpoint(folder: Path) -> bool:
    return any(folder.glob("checkpoints/checkpoint-*"))


def _protected(path: Path) -> str | None:
    """Why `path` may never be replaced, or None."""
    target = path.expanduser().resolve()
    if target == Path(target.anchor):
        return "it is the file-system root"
    if target == Path.home().resolve():
        return "it is your home folder"
    cwd = Path.cwd().resolve()
    if target == cwd:
        return "it is the working folder"
    if target in cwd.parents:
        return "it holds the working folder"
    return None


def is_ours(folder: Path) -> bool:
    """A folder unlearnkit wrote (it carries the marker), or an empty one."""
    return (folder / MARKER).is_file() or (folder.is_dir() and not any(folder.iterdir()))


def check_replaceable(path: str | os.PathLike) -> None:
    """Refuse (one line, naming the fix) to replace anything that is not an unlearnkit output."""
    path = Path(path)
    why = _protected(path)
    if why:
        raise UnlearnkitError(f"refusing to replace {path}: {why}; choose a new folder for --out")
    if not path.exists():
        return
    if not path.is_dir():
        raise UnlearnkitError(f"refusing to replace {path}: it is a file, not an unlearnkit output folder; choose another --out")
    if not is_ours(path):
        foreign = sorted(p.name for p in path.iterdir())[:3]
        raise UnlearnkitError(f"refusing to replace {path}: it holds files unlearnkit did not write ({', '.join(foreign)}); "
                              "move them or choose another --out")


def _lock_holder(partial: Path) -> int | None:
    """The pid of a live process that holds `partial`'s lock, or None (no lock, or a stale one)."""
    lock = partial / LOCK
    if not lock.exists():
        return None
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        with contextlib.suppress(OSError, ValueError):
            return int(os.pread(fd, 32, 0).decode().strip() or 0) or -1
        return -1
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _take_lock(partial: Path) -> int:
    fd = os.open(partial / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UnlearnkitError(f"{partial.with_name(partial.name[:-len('.partial')])} is in use by another unlearnkit process: "
                              "wait for it to end or choose another --out") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def check_output_dir(out: str | os.PathLike, overwrite: bool = False, resume: bool = False) -> None:
    """Fail early (before any work) if `out` may not be written."""
    out = Path(out)
    if _protected(out):  # before anything else: "/" has no name to hang ".partial" on
        check_replaceable(out)
    partial = partial_path(out)
    holder = _lock_holder(partial) if partial.is_dir() else None
    if holder:
        pid = f" (pid {holder})" if holder > 0 else ""
        raise UnlearnkitError(f"{out} is being written by a running unlearnkit process{pid}: wait for it to end "
                              "or choose another --out (neither --resume nor --overwrite may share a live run's folder)")
    if out.exists() and not overwrite:
        raise UnlearnkitError(f"{out} already exists: pass --overwrite to replace it, or choose another --out")
    if out.exists():
        check_replaceable(out)
    if partial.exists() and not (resume or overwrite):
        raise UnlearnkitError(f"{partial} holds an unfinished run: pass --resume to continue it, or --overwrite to start over")
    if partial.exists() and overwrite and not resume:
        check_replaceable(partial)
    if resume and not partial.exists():
        raise UnlearnkitError(f"nothing to resume: {partial} does not exist (drop --resume to start a new run)")


def _write_marker(folder: Path, command: str) -> None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("unlearnkit")
    except PackageNotFoundError:  # run from a source tree without installing
        ours = "source"
    write_text_atomic(folder / MARKER, json.dumps({"tool": "unlearnkit", "version": ours, "command": command,
                                                   "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}) + "\n")


@contextlib.contextmanager
def output_dir(out: str | os.PathLike, overwrite: bool = False, resume: bool = False, command: str = "unlearnkit",
               keep_checkpoints: bool = False):
    """Yield the working folder; on success it becomes `out` (replacing it only with overwrite, and
    only if it is ours), its checkpoints/ dropped unless keep_checkpoints. Under a multi-process launch
    only rank 0 checks, cleans, locks and renames; the others wait until it has (a rank that created
    the folder first would make rank 0 refuse it as an unfinished run)."""
    out = Path(out)
    if not is_main_process():
        wait_for_everyone()
        yield partial_path(out)
        return
    check_output_dir(out, overwrite, resume)
    partial = partial_path(out)
    if partial.exists() and not resume:
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    if not (partial / MARKER).exists():
        _write_marker(partial, command)
    lock = _take_lock(partial)
    try:
        wait_for_everyone()
        try:
            yield partial
        except BaseException:
            if not _has_checkpoint(partial):
                shutil.rmtree(partial, ignore_errors=True)
            raise
        if not keep_checkpoints:
            shutil.rmtree(partial / "checkpoints", ignore_errors=True)  # the finished model supersedes them
        if out.exists():
            check_replaceable(out)
            shutil.rmtree(out)
        (partial / LOCK).unlink(missing_ok=True)
        partial.rename(out)
    finally:
        os.close(lock)


def claim_folder(out: str | os.PathLike, command: str) -> Path:
    """A folder that holds several outputs (compare's): created with our marker, or reused only if it
    already carries it (or is empty), so that results never land among a user's own files."""
    out = Path(out)
    check_replaceable(out)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / MARKER).exists():
        _write_marker(out, command)
    return out


def replaceable_file(path: str | os.PathLike, overwrite: bool, looks_ours) -> None:
    """The single-file form of the rule (`collect`'s JSONL): an existing file is replaced only with
    --overwrite and only when `looks_ours(path)` says unlearnkit wrote it."""
    path = Path(path)
    why = _protected(path)
    if why or path.is_dir():
        raise UnlearnkitError(f"refusing to write {path}: {why or 'it is a folder'}; pass a file name for --out")
    if not path.exists():
        return
    if not overwrite:
        raise UnlearnkitError(f"{path} already exists: pass --overwrite to replace it, or choose another --out")
    if not looks_ours(path):
        raise UnlearnkitError(f"refusing to replace {path}: unlearnkit did not write it; choose another --out")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write via a temporary file and rename; the file gets the mode a plain open() would (the
    user's umask), not mkstemp's private 0600."""
    if not is_main_process():
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
