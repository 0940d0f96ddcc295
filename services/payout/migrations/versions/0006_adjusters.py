"""adjusters: the registry of adjusters' authority, and every change to it

Revision ID: 0006_adjusters
Revises: 0005_remediation
Create Date: 2026-12-06 04:50:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = '0006_adjusters'
down_revision: str | None = '0005_remediation'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('adjusters',
    sa.Column('subject', sa.String(length=256), nullable=False),
    sa.Column('authority_limit', shared.db.MoneyColumn(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('updated_by', sa.String(length=256), nullable=False),
    sa.Column('updated_at', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('subject', name=op.f('pk_adjusters'))
    )
    op.create_table('adjuster_changes',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('subject', sa.String(length=256), nullable=False),
    sa.Column('changed_by', sa.String(length=256), nullable=False),
    sa.Column('at', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('old_authority_limit', shared.db.MoneyColumn(), nullable=True),
    sa.Column('new_authority_limit', shared.db.MoneyColumn(), nullable=False),
    sa.Column('old_active', sa.Boolean(), nullable=True),
    sa.Column('new_active', sa.Boolean(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_adjuster_changes'))
    )
    op.create_index(op.f('ix_adjuster_changes_subject'), 'adjuster_changes', ['subject'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_adjuster_changes_subject'), table_name='adjuster_changes')
    op.drop_table('adjuster_changes')
    op.drop_table('adjusters')
