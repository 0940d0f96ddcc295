"""an index of the incidents triage has not answered yet (the safety net's query)

Revision ID: 0004_incidents_untriaged_index
Revises: 0003_policy_contact_email
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004_incidents_untriaged_index'
down_revision: str | None = '0003_policy_contact_email'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_incidents_untriaged', 'incidents', ['reported_at'], unique=False,
                    postgresql_where=sa.text("status = 'reported'"))


def downgrade() -> None:
    op.drop_index('ix_incidents_untriaged', table_name='incidents',
                  postgresql_where=sa.text("status = 'reported'"))
