"""the trial's assessments, measured baseline traits, age and weekly sessions

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 10:00:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# written out rather than read from the code, so that this revision stays what it was
TRAITS = ('reward_sensitivity', 'cognitive_control', 'baseline_severity', 'distress_tolerance', 'fitness', 'age')


def upgrade() -> None:
    """Add the assessments table, the participants' age and measured traits, and weekly sessions."""
    op.create_table(
        'assessments',
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.Column('pid', sa.Integer(), nullable=False),
        sa.Column('week', sa.Integer(), nullable=False),
        sa.Column('score', sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('run_id', 'pid', 'week'),
    )
    with op.batch_alter_table('participants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('age', sa.Float(), nullable=True))
        for trait in TRAITS:
            batch_op.add_column(sa.Column(f'measured_{trait}', sa.Float(), nullable=True))
    with op.batch_alter_table('participant_weeks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sessions', sa.Integer(), nullable=True))


def downgrade() -> None:
    """Drop what upgrade added."""
    with op.batch_alter_table('participant_weeks', schema=None) as batch_op:
        batch_op.drop_column('sessions')
    with op.batch_alter_table('participants', schema=None) as batch_op:
        for trait in reversed(TRAITS):
            batch_op.drop_column(f'measured_{trait}')
        batch_op.drop_column('age')
    op.drop_table('assessments')
