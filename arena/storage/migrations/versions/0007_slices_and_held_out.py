"""model-level numbers per prompt slice (model_metrics.slice) and held-out prompt sets
(prompt_sets)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 09:00:00

``arena distribution --by category`` (or ``--by prompt-set``) stores one number per
(model, metric, reference set, slice); the whole-model number keeps ``slice`` "" and
its meaning, so every existing row is a whole-model row. The unique key gains the
slice. ``prompt_sets`` holds a set's held-out flag; a set without a row is not held out,
so nothing needs backfilling.

The downgrade refuses a database holding per-slice numbers: the older key would see
them as duplicates of the whole-model rows. They are recomputable; the message says
how to remove them.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_metrics") as batch:
        batch.add_column(
            sa.Column("slice", sa.String(length=260), nullable=False, server_default="")
        )
        batch.drop_constraint("uq_model_metric", type_="unique")
        batch.create_unique_constraint(
            "uq_model_metric_slice", ["model_id", "metric", "reference", "slice"]
        )
    op.create_table(
        "prompt_sets",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("held_out", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    mm = sa.table("model_metrics", sa.column("slice", sa.String()))
    sliced = op.get_bind().scalar(
        sa.select(sa.func.count()).select_from(mm).where(mm.c.slice != "")
    )
    if sliced:
        raise RuntimeError(
            f"cannot downgrade below 0007: {sliced} model-level number(s) per prompt slice "
            "(arena distribution --by), which the older schema cannot tell from the whole-model "
            "numbers. Delete them first (DELETE FROM model_metrics WHERE slice <> '') or keep "
            "this revision."
        )
    op.drop_table("prompt_sets")
    with op.batch_alter_table("model_metrics") as batch:
        batch.drop_constraint("uq_model_metric_slice", type_="unique")
        batch.create_unique_constraint("uq_model_metric", ["model_id", "metric", "reference"])
        batch.drop_column("slice")
