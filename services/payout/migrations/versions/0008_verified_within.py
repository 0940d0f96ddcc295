"""the authority a loss item's verified worth was accepted within; a claim's deciders (two
approvers) as text of any length

Revision ID: 0008_verified_within
Revises: 0007_remediation_order
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = '0008_verified_within'
down_revision: str | None = '0007_remediation_order'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('loss_items',
                  sa.Column('verified_within', shared.db.MoneyColumn(), nullable=True))
    op.alter_column('claims', 'decided_by', type_=sa.Text(),
                    existing_type=sa.String(length=200), existing_nullable=True)


def downgrade() -> None:
    op.alter_column('claims', 'decided_by', type_=sa.String(length=200),
                    existing_type=sa.Text(), existing_nullable=True)
    op.drop_column('loss_items', 'verified_within')
