"""The production ledger: machine state intervals, part counts (per reading and per minute),
derivation checkpoints and downtime notes. Empty at first; `collector rebuild` fills them from
readings already stored.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "state_intervals",
        sa.Column("machine_id", sa.String(64), primary_key=True),
        sa.Column("start_ts", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("end_ts", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "part_counts",
        sa.Column("machine_id", sa.String(64), primary_key=True),
        sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("total", sa.BigInteger, nullable=False),
        sa.Column("good", sa.BigInteger, nullable=False),
        sa.Column("reject", sa.BigInteger, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "production_1m",
        sa.Column("machine_id", sa.String(64), primary_key=True),
        sa.Column("minute", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("total", sa.BigInteger, nullable=False),
        sa.Column("good", sa.BigInteger, nullable=False),
        sa.Column("reject", sa.BigInteger, nullable=False),
        sa.Column("energy_kwh", sa.Float(53), nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "production_checkpoints",
        sa.Column("machine_id", sa.String(64), primary_key=True),
        sa.Column("upto", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16)),
        sa.Column("since", sa.BigInteger),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "downtime_notes",
        sa.Column("machine_id", sa.String(64), primary_key=True),
        sa.Column("start_ts", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("reason", sa.String(64)),
        sa.Column("comment", sa.Text),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("downtime_notes", "production_checkpoints", "production_1m", "part_counts",
                  "state_intervals"):
        op.drop_table(table)
