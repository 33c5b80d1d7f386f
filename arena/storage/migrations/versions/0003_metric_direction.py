"""metric direction stored with the data: scores.higher_is_better, model_metrics.higher_is_better

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 02:40:00

Readers (the Agreement page, exports) orient a metric by the direction written beside
its numbers instead of a copy of the scoring registry (which imports torch). Rows
written before this revision are backfilled from the directions below: the registry's
as of this revision, frozen here as a historical fact (a migration must not import
``scoring``). A name not listed, e.g. a metric from a plugin, is backfilled as
higher-is-better, the registry's default (``Metric.higher_is_better = True``).
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

#: Per-image metrics whose higher_is_better was False (scoring.metrics, revision 0003);
#: aesthetic, clip, colorfulness, contrast, hpsv2, pickscore, sharpness and tags were True.
PER_IMAGE_LOWER_IS_BETTER = ("anomaly",)
#: Model-level metrics whose higher_is_better was False (scoring.distribution); diversity
#: was True.
MODEL_LEVEL_LOWER_IS_BETTER = ("kid", "fid", "cmmd", "fd-dino", "as")


def _add_and_backfill(table_name: str, lower_is_better: tuple[str, ...]) -> None:
    with op.batch_alter_table(table_name) as batch:
        batch.add_column(sa.Column("higher_is_better", sa.Boolean(), nullable=True))
    table = sa.table(
        table_name, sa.column("metric", sa.String()), sa.column("higher_is_better", sa.Boolean())
    )
    op.execute(
        table.update().values(
            higher_is_better=sa.case((table.c.metric.in_(lower_is_better), False), else_=True)
        )
    )
    with op.batch_alter_table(table_name) as batch:
        batch.alter_column("higher_is_better", existing_type=sa.Boolean(), nullable=False)


def upgrade() -> None:
    _add_and_backfill("scores", PER_IMAGE_LOWER_IS_BETTER)
    _add_and_backfill("model_metrics", MODEL_LEVEL_LOWER_IS_BETTER)


def downgrade() -> None:
    for table_name in ("model_metrics", "scores"):
        with op.batch_alter_table(table_name) as batch:
            batch.drop_column("higher_is_better")
