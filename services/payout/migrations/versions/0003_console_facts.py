"""What the adjuster console shows: the incident's title and description, triage's priority
and regulatory grade, the vendors' findings

Revision ID: 0003_console_facts
Revises: 0002_payout_integrity
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = '0003_console_facts'
down_revision: str | None = '0002_payout_integrity'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('incidents') as batch_op:
        batch_op.add_column(sa.Column('title', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('description', sa.Text(), nullable=True))
    with op.batch_alter_table('claims') as batch_op:
        batch_op.add_column(sa.Column('findings', sa.JSON(), nullable=True))
    op.create_table(
        'incident_triage',
        sa.Column('incident_id', sa.Uuid(), nullable=False),
        sa.Column('priority', sa.String(length=8), nullable=False),
        sa.Column('regulatory_grade', sa.String(length=40), nullable=False),
        sa.Column('regulatory_deadline', shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column('triaged_at', shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('incident_id', name=op.f('pk_incident_triage')),
    )


def downgrade() -> None:
    op.drop_table('incident_triage')
    with op.batch_alter_table('claims') as batch_op:
        batch_op.drop_column('findings')
    with op.batch_alter_table('incidents') as batch_op:
        batch_op.drop_column('description')
        batch_op.drop_column('title')
