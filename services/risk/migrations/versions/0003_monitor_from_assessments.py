"""the monitoring vendor derived from the assessments: a cancelled job no longer leaves its
vendor monitoring the policy

Revision ID: 0003_monitor_from_assessments
Revises: 0002_remediation_superseded
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = '0003_monitor_from_assessments'
down_revision: str | None = '0002_remediation_superseded'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Monitors left by a job cancelled after it was accepted: every policy's monitor becomes
    # the vendor of its latest assessment that was accepted and not cancelled, or none (the
    # rule services/risk/context.py keeps from now on).
    profiles = sa.table('risk_profiles', sa.column('policy_number', sa.String()),
                        sa.column('monitoring_vendor_id', sa.String()))
    assessments = sa.table(
        'assessments', sa.column('id', sa.Uuid()), sa.column('policy_number', sa.String()),
        sa.column('status', sa.String()), sa.column('vendor_id', sa.String()),
        sa.column('requested_at', shared.db.UTCDateTime(timezone=True)),
    )
    latest_accepted = (
        sa.select(assessments.c.vendor_id)
        .where(assessments.c.policy_number == profiles.c.policy_number,
               assessments.c.status.in_(('accepted', 'completed')))
        .order_by(assessments.c.requested_at.desc(), assessments.c.id.desc())
        .limit(1).scalar_subquery())
    op.execute(profiles.update().values(monitoring_vendor_id=latest_accepted))


def downgrade() -> None:
    """Nothing to undo: the schema is unchanged, and the monitors it replaced were wrong."""
