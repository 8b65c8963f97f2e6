"""run claims (which process is computing a run, until when) and passwords masked in recorded commands

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-14 10:00:00

"""
import re
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# written out rather than read from the code (sim/redact.py), so that this revision stays what it was
USERINFO = re.compile(r"([A-Za-z][\w+.-]*://[^\s/@:]*:)[^\s@]*(@)")
KEYWORD = re.compile(r"(\b(?:password|passwd|pwd|pass|sslpassword|secret)\s*=\s*)[^&;\s'\"]+", re.IGNORECASE)


def _mask(text: str) -> str:
    return KEYWORD.sub(r"\1***", USERINFO.sub(r"\1***\2", text))


def upgrade() -> None:
    """Add runs.claimed_by and runs.lease_until; mask any password in batches.command."""
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=120), nullable=True))
        batch_op.add_column(sa.Column('lease_until', sa.DateTime(), nullable=True))
    conn = op.get_bind()
    batches = sa.table('batches', sa.column('id', sa.Integer), sa.column('command', sa.Text))
    for row in conn.execute(sa.select(batches.c.id, batches.c.command).where(batches.c.command.is_not(None))).all():
        masked = _mask(row.command)
        if masked != row.command:
            conn.execute(batches.update().where(batches.c.id == row.id).values(command=masked))


def downgrade() -> None:
    """Drop the claim columns (masked passwords stay masked)."""
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('lease_until')
        batch_op.drop_column('claimed_by')
