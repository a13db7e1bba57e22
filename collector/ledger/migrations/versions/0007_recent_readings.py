"""Recent readings kept apart (`readings_recent`) and one view of all readings
(`readings_all`).

On SQLite the writer commits each batch into `readings_recent` and moves its rows into
`readings` (and their minutes into `readings_1m`) every half minute in one sorted pass: a
commit then writes a few pages of the small table instead of one page per series of the
large one (see "Recent readings" in the README's design section). A reading is in exactly
one of the two tables; readers read `readings_all`. On PostgreSQL the writer still commits
straight into `readings`, and `readings_recent` stays empty.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

from collector.ledger.rollup import fold_recent

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

COLUMNS = "series_id, ts, value, text, quality, value_int, status"


def upgrade() -> None:
    op.create_table(
        "readings_recent",
        sa.Column("series_id", sa.Integer, primary_key=True),
        sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("value", sa.Float(53)),
        sa.Column("text", sa.Text),
        sa.Column("quality", sa.SmallInteger, nullable=False),
        sa.Column("value_int", sa.BigInteger),
        sa.Column("status", sa.BigInteger),
        sqlite_with_rowid=False,
    )
    op.execute(f"CREATE VIEW readings_all AS SELECT {COLUMNS} FROM readings "
               f"UNION ALL SELECT {COLUMNS} FROM readings_recent")


def downgrade() -> None:
    # what is still recent joins the readings, and the minutes it falls in are rebuilt
    op.execute("DROP VIEW readings_all")
    fold_recent(op.get_bind())
    op.drop_table("readings_recent")
