"""policies: the policy's contact email, for risk's notifications by email

Revision ID: 0003_policy_contacts
Revises: 0002_subscription_unique
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003_policy_contacts'
down_revision: str | None = '0002_subscription_unique'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'policies',
        sa.Column('policy_number', sa.String(length=64), nullable=False),
        sa.Column('org_id', sa.String(length=128), nullable=False),
        sa.Column('contact_email', sa.String(length=320), nullable=True),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('policy_number', name=op.f('pk_policies')),
    )


def downgrade() -> None:
    op.drop_table('policies')
