"""claims.data_issue: facts that cannot be assessed are shown, not crashed on

Revision ID: 0002_payout_integrity
Revises: 0001
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002_payout_integrity'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('claims') as batch_op:
        batch_op.add_column(sa.Column('data_issue', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('claims') as batch_op:
        batch_op.drop_column('data_issue')
