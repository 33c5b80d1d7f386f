"""judge details: raters.details (a judge's model, template and answer words) and
votes.details (the judge's probabilities of each answer and the order it saw)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 11:20:00

Both columns are nullable JSON and stay NULL for people: a human vote has no details.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("raters") as batch:
        batch.add_column(sa.Column("details", sa.JSON(), nullable=True))
    with op.batch_alter_table("votes") as batch:
        batch.add_column(sa.Column("details", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("votes") as batch:
        batch.drop_column("details")
    with op.batch_alter_table("raters") as batch:
        batch.drop_column("details")
