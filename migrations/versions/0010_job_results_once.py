"""A job's final answer carries its job, once: an optimization or a learned optimizer stored by
a job has its job id, unique, so a retried job reuses its answer instead of storing another.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("optimizations") as batch:
        batch.add_column(sa.Column("job_id", sa.Integer(), nullable=True))
        batch.create_unique_constraint(batch.f("uq_optimizations_job_id"), ["job_id"])
        batch.create_foreign_key(
            batch.f("fk_optimizations_job_id_jobs"), "jobs", ["job_id"], ["id"], ondelete="SET NULL"
        )
    # a retry before this revision may have stored a second version: the first keeps the job
    op.execute(
        "UPDATE learned_optimizers SET job_id = NULL WHERE job_id IS NOT NULL AND id NOT IN "
        "(SELECT MIN(id) FROM learned_optimizers WHERE job_id IS NOT NULL GROUP BY job_id)"
    )
    with op.batch_alter_table("learned_optimizers") as batch:
        batch.create_unique_constraint(batch.f("uq_learned_optimizers_job_id"), ["job_id"])


def downgrade() -> None:
    with op.batch_alter_table("learned_optimizers") as batch:
        batch.drop_constraint(batch.f("uq_learned_optimizers_job_id"), type_="unique")
    with op.batch_alter_table("optimizations") as batch:
        batch.drop_constraint(batch.f("fk_optimizations_job_id_jobs"), type_="foreignkey")
        batch.drop_constraint(batch.f("uq_optimizations_job_id"), type_="unique")
        batch.drop_column("job_id")
