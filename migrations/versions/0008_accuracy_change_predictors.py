"""Predictors may model the accuracy change a quantization policy brings.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

OLD = "target IN ('latency_ms', 'energy_mj', 'accuracy')"
NEW = "target IN ('latency_ms', 'energy_mj', 'accuracy', 'accuracy_change')"


def upgrade() -> None:
    with op.batch_alter_table("predictors") as batch:
        batch.drop_constraint(op.f("ck_predictors_target"), type_="check")
        batch.create_check_constraint("target", NEW)


def downgrade() -> None:
    op.execute("DELETE FROM predictors WHERE target = 'accuracy_change'")
    with op.batch_alter_table("predictors") as batch:
        batch.drop_constraint(op.f("ck_predictors_target"), type_="check")
        batch.create_check_constraint("target", OLD)
