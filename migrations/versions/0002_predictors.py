"""Predictors: trained artifacts with quality figures and provenance.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "predictors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(length=16), nullable=False),
        sa.Column("space", sa.String(length=32), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("dataset", sa.String(length=64), nullable=True),
        sa.Column("policy", sa.String(length=400), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("artifact", sa.String(length=400), nullable=False),
        sa.Column("quality", sa.JSON(), nullable=False),
        sa.Column("provenance", sa.JSON(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "target IN ('latency_ms', 'energy_mj', 'accuracy')", name=op.f("ck_predictors_target")
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_predictors_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_predictors_job_id_jobs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_predictors")),
        sa.UniqueConstraint(
            "target",
            "space",
            "device_id",
            "dataset",
            "policy",
            "version",
            name="uq_predictors_scope",
        ),
    )
    op.create_index("ix_predictors_space_target", "predictors", ["space", "target"])


def downgrade() -> None:
    op.drop_index("ix_predictors_space_target", table_name="predictors")
    op.drop_table("predictors")
