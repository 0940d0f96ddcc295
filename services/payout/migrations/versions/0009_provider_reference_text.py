"""a payment's provider reference as text of any length: the provider's id, never refused

Revision ID: 0009_provider_reference_text
Revises: 0008_verified_within
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009_provider_reference_text'
down_revision: str | None = '0008_verified_within'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column('payments', 'provider_reference', type_=sa.Text(),
                    existing_type=sa.String(length=200), existing_nullable=True)


def downgrade() -> None:
    op.alter_column('payments', 'provider_reference', type_=sa.String(length=200),
                    existing_type=sa.Text(), existing_nullable=True)
