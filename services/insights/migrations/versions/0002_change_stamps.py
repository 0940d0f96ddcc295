"""change stamps: the version that last changed each policy, incident and claim, and a count
of rebuilds, so the statistics re-read only what changed

Revision ID: 0002_change_stamps
Revises: 0001
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_change_stamps"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STAMPED = ("policies", "incidents", "claims")


def upgrade() -> None:
    for table in STAMPED:
        op.add_column(table, sa.Column("changed_in", sa.BigInteger(), server_default="0",
                                       nullable=False))
        op.create_index(f"ix_{table}_changed_in", table, ["changed_in"], unique=False)
    op.create_index("ix_claims_policy_number", "claims", ["policy_number"], unique=False)
    op.add_column("read_model_version", sa.Column("rebuilds", sa.BigInteger(), server_default="0",
                                                  nullable=False))


def downgrade() -> None:
    op.drop_column("read_model_version", "rebuilds")
    op.drop_index("ix_claims_policy_number", table_name="claims")
    for table in STAMPED:
        op.drop_index(f"ix_{table}_changed_in", table_name=table)
        op.drop_column(table, "changed_in")
