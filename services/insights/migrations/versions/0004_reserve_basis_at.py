"""reserve basis at: the event time of the movement that set each claim's reserve basis, so
an older assessment applied after a newer one (a rebuild racing the live consumer) is ignored;
existing claims take the basis of their latest reserve movement, stamped as a change

Revision ID: 0004_reserve_basis_at
Revises: 0003_imported_history
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_reserve_basis_at"
down_revision: str | None = "0003_imported_history"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("claims", sa.Column("reserve_basis_at", sa.DateTime(timezone=True),
                                      nullable=True))
    op.execute("UPDATE read_model_version SET version = version + 1 WHERE id = 1")
    op.execute("""
        UPDATE claims
        SET reserve_basis = latest.amount, reserve_basis_at = latest.at,
            changed_in = (SELECT version FROM read_model_version WHERE id = 1)
        FROM (SELECT DISTINCT ON (claim_id) claim_id, amount, at
              FROM claim_movements WHERE kind = 'reserve'
              ORDER BY claim_id, at DESC, amount DESC) AS latest
        WHERE claims.claim_id = latest.claim_id
    """)


def downgrade() -> None:
    op.drop_column("claims", "reserve_basis_at")
