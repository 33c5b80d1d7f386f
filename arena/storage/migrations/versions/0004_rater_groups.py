"""rater groups: raters.rater_group (and the judge kind, a new word in raters.kind)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 10:20:00

``raters.kind`` is a String(20) without a CHECK constraint, so the new kind ``judge``
needs no schema change. An older arena counts every kind in its leaderboards, judges
included, so the downgrade refuses a database that holds judges (the message says how
to get out) rather than let their votes mix into the human board.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("raters") as batch:
        batch.add_column(sa.Column("rater_group", sa.String(length=40), nullable=True))
        batch.create_index("ix_raters_rater_group", ["rater_group"])


def downgrade() -> None:
    raters = sa.table("raters", sa.column("kind", sa.String()))
    judges = op.get_bind().scalar(
        sa.select(sa.func.count()).select_from(raters).where(raters.c.kind == "judge")
    )
    if judges:
        raise RuntimeError(
            f"cannot downgrade below 0004: {judges} rater(s) of kind 'judge', which an older "
            "arena would count as human raters; delete their votes first or keep this revision."
        )
    with op.batch_alter_table("raters") as batch:
        batch.drop_index("ix_raters_rater_group")
        batch.drop_column("rater_group")
