"""policies carry the policyholder's contact email (risk's notifications by email)

Revision ID: 0003_policy_contact_email
Revises: 0002_policy_pricing
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003_policy_contact_email'
down_revision: str | None = '0002_policy_pricing'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('policies', sa.Column('contact_email', sa.String(length=320), nullable=True))


def downgrade() -> None:
    op.drop_column('policies', 'contact_email')
