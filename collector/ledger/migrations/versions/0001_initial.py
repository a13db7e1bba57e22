"""Machines, series and readings.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "machines",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200)),
        sa.Column("area", sa.String(200)),
        sa.Column("line", sa.String(200)),
        sa.Column("box", sa.String(64)),
    )
    op.create_table(
        "series",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("machine_id", sa.String(64), sa.ForeignKey("machines.id"), nullable=False),
        sa.Column("tag", sa.String(64), nullable=False),
        sa.Column("unit", sa.String(32)),
        sa.Column("source", sa.String(64)),
        sa.Column("protocol", sa.String(16)),
        sa.Column("kind", sa.String(8)),
        sa.UniqueConstraint("machine_id", "tag", name="uq_series_machine_tag"),
    )
    op.create_table(
        "readings",
        sa.Column("series_id", sa.Integer, sa.ForeignKey("series.id"), primary_key=True),
        sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("value", sa.Float(53)),
        sa.Column("text", sa.Text),
        sa.Column("quality", sa.SmallInteger, nullable=False, server_default="0"),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("readings")
    op.drop_table("series")
    op.drop_table("machines")
