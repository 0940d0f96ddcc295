"""policies carry pricing data: annual premium, employees, annual revenue (issue 26)

Revision ID: 0002_policy_pricing
Revises: 0001
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = '0002_policy_pricing'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('policies', sa.Column('annual_premium', shared.db.MoneyColumn(), nullable=True))
    op.add_column('policies', sa.Column('employees', sa.Integer(), nullable=True))
    op.add_column('policies', sa.Column('annual_revenue', shared.db.MoneyColumn(), nullable=True))


def downgrade() -> None:
    op.drop_column('policies', 'annual_revenue')
    op.drop_column('policies', 'employees')
    op.drop_column('policies', 'annual_premium')
