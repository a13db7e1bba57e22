"""The ledger's schema revisions: which one a ledger is at, and going back to an older one
(`collector db revision`, `collector db downgrade`).

A downgrade runs the migrations' own downgrade steps on the ledger, newest first. What a newer
revision added goes with it (0006: the hourly production sums, filled again from the minutes
by the next upgrade; 0005: the exact integers and status codes of readings; 0004: the
production ledger); the readings themselves stay.
"""

from __future__ import annotations

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from collector.ledger.engine import _alembic_config, current_revision


class RevisionError(ValueError):
    """A revision that does not exist or is not older than the ledger's; says what to give."""


def revisions() -> list[str]:
    """Every revision this collector knows, oldest first."""
    script = ScriptDirectory.from_config(_alembic_config())
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def head() -> str:
    return revisions()[-1]


async def downgrade(engine: AsyncEngine, to: str) -> tuple[str | None, str | None]:
    """Bring the ledger back to revision `to`; (revision before, revision after)."""
    known = revisions()
    if to not in known:
        raise RevisionError(f"--to {to!r} is not a ledger revision: give one of "
                            f"{', '.join(known)}")
    before = await current_revision(engine)
    if before is None:
        raise RevisionError("the database holds no ledger (no alembic_version table): check "
                            "ledger.url in the config")
    if before not in known:
        raise RevisionError(f"the ledger is at revision {before!r}, newer than this collector "
                            "knows: downgrade with the collector version that upgraded it")
    if known.index(to) > known.index(before):
        raise RevisionError(f"the ledger is at revision {before}, older than --to {to}: "
                            "`collector db upgrade` moves forward")

    def run(conn: Connection) -> None:
        command.downgrade(_alembic_config(conn), to)

    async with engine.begin() as conn:
        await conn.run_sync(run)
    return before, await current_revision(engine)
