"""remediation items superseded by a later assessment; a note on a claim decided before risk's
news that changes REMEDIATION_OVERDUE's answer

Revision ID: 0007_remediation_order
Revises: 0006_adjusters
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = '0007_remediation_order'
down_revision: str | None = '0006_adjusters'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('remediation_items',
                  sa.Column('superseded_at', shared.db.UTCDateTime(timezone=True), nullable=True))
    op.add_column('claims', sa.Column('remediation_note', sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column('claims', 'remediation_note')
    op.drop_column('remediation_items', 'superseded_at')
