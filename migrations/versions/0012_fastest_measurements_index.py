"""An index for a device's fastest measured designs in a policy.

Every ``/predict`` and ``/optimize`` answer reads the device's fastest measured working
design (the floor extrapolations are judged against); without the index that was a sort of
all of the device's measurements, 15 ms of a 19 ms ``/predict`` on PostgreSQL.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_measurements_fastest",
        "measurements",
        ["device_id", "metric", "policy", "value"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_measurements_fastest", table_name="measurements")
