"""imported history: the source of each policy, incident and claim (live from the topics,
history from an imported loss bordereau) and the imports themselves

Revision ID: 0003_imported_history
Revises: 0002_change_stamps
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_imported_history"
down_revision: str | None = "0002_change_stamps"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SOURCED = ("policies", "incidents", "claims")


def upgrade() -> None:
    for table in SOURCED:
        op.add_column(table, sa.Column("source", sa.String(length=8), server_default="live",
                                       nullable=False))
    op.create_table(
        "history_imports",
        sa.Column("import_id", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("exposures", sa.Integer(), nullable=False),
        sa.Column("claims", sa.Integer(), nullable=False),
        sa.Column("movements", sa.Integer(), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("imported_by", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("import_id", name=op.f("pk_history_imports")),
    )


def downgrade() -> None:
    op.drop_table("history_imports")
    for table in SOURCED:
        op.drop_column(table, "source")
