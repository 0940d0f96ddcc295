"""dead letters: the events triage gave up on, per incident (shown until a replay applies them)

Revision ID: 0002_dead_letters
Revises: 0001
"""
from collections.abc import Sequence

from shared import dead_letters

revision: str = "0002_dead_letters"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    dead_letters.create_table()


def downgrade() -> None:
    dead_letters.drop_table()
