"""trustworthy votes: per-battle image handles, client groups, server secrets

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 23:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("battles") as batch:
        batch.add_column(sa.Column("left_handle", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("right_handle", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("client_group", sa.String(length=32), nullable=True))
        batch.create_unique_constraint("uq_battles_left_handle", ["left_handle"])
        batch.create_unique_constraint("uq_battles_right_handle", ["right_handle"])
        batch.create_index("ix_battles_client_group", ["client_group"])
    with op.batch_alter_table("raters") as batch:
        batch.add_column(sa.Column("client_group", sa.String(length=32), nullable=True))
    op.create_table(
        "server_secrets",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("value", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("server_secrets")
    with op.batch_alter_table("raters") as batch:
        batch.drop_column("client_group")
    with op.batch_alter_table("battles") as batch:
        batch.drop_index("ix_battles_client_group")
        batch.drop_constraint("uq_battles_right_handle", type_="unique")
        batch.drop_constraint("uq_battles_left_handle", type_="unique")
        batch.drop_column("client_group")
        batch.drop_column("right_handle")
        batch.drop_column("left_handle")
