"""one active subscription per owner and URL

Revision ID: 0002_subscription_unique
Revises: 0001
Create Date: 2026-12-06 01:40:00
"""
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = '0002_subscription_unique'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Duplicates made before the index existed: the oldest stays active, the others are deleted.
    subscriptions = sa.table(
        'subscriptions', sa.column('id', sa.Uuid()), sa.column('owner', sa.String()),
        sa.column('url', sa.String()), sa.column('active', sa.Boolean()),
        sa.column('created_at', shared.db.UTCDateTime(timezone=True)),
        sa.column('deleted_at', shared.db.UTCDateTime(timezone=True)),
    )
    older = subscriptions.alias('older')
    op.execute(
        subscriptions.update()
        .where(subscriptions.c.active.is_(True), sa.exists().where(
            older.c.active.is_(True), older.c.owner == subscriptions.c.owner,
            older.c.url == subscriptions.c.url,
            sa.tuple_(older.c.created_at, older.c.id)
            < sa.tuple_(subscriptions.c.created_at, subscriptions.c.id)))
        .values(active=False, deleted_at=datetime.now(UTC))
    )
    op.create_index('uq_subscriptions_owner_url_active', 'subscriptions', ['owner', 'url'],
                    unique=True, postgresql_where=sa.text('active'))


def downgrade() -> None:
    op.drop_index('uq_subscriptions_owner_url_active', table_name='subscriptions',
                  postgresql_where=sa.text('active'))
