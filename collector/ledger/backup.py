"""`collector db backup`: an online, consistent copy of a SQLite ledger (and of the spool).

SQLite's backup API copies the database as one read transaction sees it: in WAL mode that
snapshot does not stop the running collector from writing, and the copy holds every reading
committed before the backup began. The copy is written beside the target under a temporary
name, turned into a single file (no -wal beside it), checked, and only then renamed into place,
so an interrupted backup never leaves a half-written file under the target's name.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from collector.ledger.engine import async_url


class BackupError(RuntimeError):
    """A backup that cannot be made; the message says what to change."""


@dataclass(frozen=True)
class Copied:
    source: Path
    target: Path
    size: int  # bytes of the copy


def sqlite_file(url: str, schema: str | None = None) -> Path:
    """The file of a SQLite ledger URL; a PostgreSQL ledger is refused with what to use."""
    parsed = make_url(async_url(url))
    if parsed.get_backend_name() != "sqlite":
        where = f" -n {schema}" if schema else ""
        raise BackupError(
            f"the ledger is on PostgreSQL ({parsed.host}/{parsed.database}): back it up with "
            f"pg_dump (pg_dump -Fc{where} -f ledger.dump postgresql://...)")
    return Path(parsed.database or "").expanduser()


def need_file(source: Path, setting: str) -> None:
    if not source.is_file():
        raise BackupError(f"{str(source.absolute())!r} does not exist: check {setting} in the config")


def backup_file(source: Path, target: Path, setting: str = "ledger.url") -> Copied:
    """Copy the SQLite database `source` to `target` (replaced if present) while others write;
    `setting` names the config key that points at `source`."""
    need_file(source, setting)
    if target.resolve() == source.resolve():
        raise BackupError(f"--to {str(target)!r} is the database itself: choose another path")
    if not target.parent.is_dir():
        raise BackupError(f"folder {str(target.parent)!r} does not exist: create it or choose "
                          "another --to")
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        src = sqlite3.connect(f"{source.absolute().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            dst = sqlite3.connect(partial)
            try:
                src.backup(dst)  # in one step: one snapshot, writers carry on (WAL)
                dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
                problem = dst.execute("PRAGMA quick_check").fetchone()[0]
                if problem != "ok":
                    raise BackupError(f"the copy of {str(source)!r} fails its check: {problem}")
            finally:
                dst.close()
        finally:
            src.close()
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        os.replace(partial, target)
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(f"cannot copy {str(source)!r} to {str(target)!r}: {exc}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return Copied(source, target, target.stat().st_size)


def spool_target(target: Path) -> Path:
    """Where the spool's copy goes beside the ledger's: backup.db → backup-spool.db."""
    return target.with_name(f"{target.stem}-spool{target.suffix or '.db'}")


def targets(to_arg: str, ledger: Path, spool: Path | None) -> tuple[Path, Path | None]:
    """`--to` a folder: the copies keep their file names; else the ledger's copy is `to` and
    the spool's goes beside it."""
    to = Path(to_arg).expanduser()
    if to_arg.endswith(("/", os.sep)) and not to.is_dir():
        raise BackupError(f"folder {str(to)!r} does not exist: create it or choose another --to")
    if to.is_dir():
        return to / ledger.name, (to / spool.name if spool is not None else None)
    return to, (spool_target(to) if spool is not None else None)
