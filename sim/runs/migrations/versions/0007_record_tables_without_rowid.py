"""record tables without rowid on SQLite (arm_days, participant_weeks, assessments)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-21 10:00:00

Each of these tables is rebuilt (copied into a new table, which then takes its name), so a large store takes
a while to upgrade once, and needs room for a second copy of them meanwhile; the file does not shrink by
itself afterwards (later runs reuse the freed pages; sqlite3's VACUUM returns them). The stored values do
not change. PostgreSQL has no rowid: nothing to do there.
"""
from typing import Sequence, Union

from alembic import op

revision: str = '0007'
down_revision: Union[str, Sequence[str], None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TABLES = ('arm_days', 'participant_weeks', 'assessments')


def upgrade() -> None:
    """Rebuild the narrow record tables WITHOUT ROWID on SQLite."""
    if op.get_bind().dialect.name != 'sqlite':
        return
    for name in TABLES:
        with op.batch_alter_table(name, recreate='always', table_kwargs={'sqlite_with_rowid': False}):
            pass


def downgrade() -> None:
    """Rebuild them as rowid tables."""
    if op.get_bind().dialect.name != 'sqlite':
        return
    for name in TABLES:
        with op.batch_alter_table(name, recreate='always'):
            pass
