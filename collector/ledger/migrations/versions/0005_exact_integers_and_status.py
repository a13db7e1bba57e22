"""Exact integers and source status codes: `value_int` (the exact value of an integer
reading, which `value`, a double, holds exactly only up to 2^53) and `status` (the source's
own status code, such as an OPC UA StatusCode) in `readings` and `latest_readings`, and
`last_int` (the newest reading's `value_int`) in the minute rollups.

Both columns are nullable and added without a default, so the migration rewrites no row on
either database; readings stored before it have no `value_int` and read as they did.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-20
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("readings", "latest_readings"):
        op.add_column(table, sa.Column("value_int", sa.BigInteger, nullable=True))
        op.add_column(table, sa.Column("status", sa.BigInteger, nullable=True))
    op.add_column("readings_1m", sa.Column("last_int", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("readings_1m") as batch:
        batch.drop_column("last_int")
    for table in ("latest_readings", "readings"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("status")
            batch.drop_column("value_int")
