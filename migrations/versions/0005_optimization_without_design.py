"""Optimizations may choose no design: an infeasible answer names none.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("optimizations") as batch:
        batch.alter_column("design", existing_type=sa.Text(), nullable=True)
        batch.alter_column("policy", existing_type=sa.String(400), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM optimizations WHERE design IS NULL OR policy IS NULL")
    with op.batch_alter_table("optimizations") as batch:
        batch.alter_column("policy", existing_type=sa.String(400), nullable=False)
        batch.alter_column("design", existing_type=sa.Text(), nullable=False)
