"""image flags: reviewers' failure flags (image_flags), and the gallery's indexes

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 09:00:00

``image_flags`` holds one row per (image, reviewer, blind or not, failure mode), or the
mode ``none`` for a verdict of no failure. Two indexes serve the Admin app's gallery: the
images of one (prompt, seed), and the battles of a prompt (its vote counts). The
downgrade drops the table, and with it every flag: it says so by refusing while flags
exist, so that no reviewer's work is thrown away by accident.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "image_flags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("reviewer", sa.String(length=200), nullable=False),
        sa.Column("flag", sa.String(length=40), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("blind", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("image_id", "reviewer", "blind", "flag", name="uq_image_flag"),
    )
    op.create_index("ix_image_flags_image_id", "image_flags", ["image_id"])
    op.create_index("ix_images_prompt_seed", "images", ["prompt_id", "seed"])
    op.create_index("ix_battles_prompt", "battles", ["prompt_id"])


def downgrade() -> None:
    flags = sa.table("image_flags", sa.column("id", sa.Integer()))
    count = op.get_bind().scalar(sa.select(sa.func.count()).select_from(flags))
    if count:
        raise RuntimeError(
            f"cannot downgrade below 0006: image_flags holds {count} reviewer flag row(s), "
            "which the older schema has no place for; export them first (arena export writes "
            "image_flags) and delete them, or keep this revision."
        )
    op.drop_index("ix_battles_prompt", table_name="battles")
    op.drop_index("ix_images_prompt_seed", table_name="images")
    op.drop_index("ix_image_flags_image_id", table_name="image_flags")
    op.drop_table("image_flags")
