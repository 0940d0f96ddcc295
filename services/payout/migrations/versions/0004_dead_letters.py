"""dead letters: the events payout gave up on, per incident (shown until a replay applies them)

Revision ID: 0004_dead_letters
Revises: 0003_console_facts
"""
from collections.abc import Sequence

from shared import dead_letters

revision: str = "0004_dead_letters"
down_revision: str | None = "0003_console_facts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    dead_letters.create_table()


def downgrade() -> None:
    dead_letters.drop_table()
