"""remediation items superseded by a later assessment of the policy

Revision ID: 0002_remediation_superseded
Revises: 0001
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = '0002_remediation_superseded'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('remediation_items',
                  sa.Column('superseded_at', shared.db.UTCDateTime(timezone=True), nullable=True))
    op.add_column('remediation_items', sa.Column('superseded_by', sa.Uuid(), nullable=True))


def downgrade() -> None:
    op.drop_column('remediation_items', 'superseded_by')
    op.drop_column('remediation_items', 'superseded_at')
