"""Production sums per hour (`production_1h`), kept in step with the minute sums: the daily
ledger and long OEE windows read 60 times fewer rows. Filled from `production_1m` here.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "production_1h",
        sa.Column("machine_id", sa.String(64), primary_key=True),
        sa.Column("hour", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("total", sa.BigInteger, nullable=False),
        sa.Column("good", sa.BigInteger, nullable=False),
        sa.Column("reject", sa.BigInteger, nullable=False),
        sa.Column("energy_kwh", sa.Float(53), nullable=False),
        sqlite_with_rowid=False,
    )
    op.execute(
        "INSERT INTO production_1h (machine_id, hour, total, good, reject, energy_kwh) "
        "SELECT machine_id, minute - minute % 3600000000, sum(total), sum(good), sum(reject), "
        "sum(energy_kwh) FROM production_1m GROUP BY 1, 2")


def downgrade() -> None:
    op.drop_table("production_1h")
