"""sweeps and their points

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 09:30:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Add the sweeps and sweep_points tables."""
    op.create_table(
        'sweeps',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=80), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('path', sa.Text(), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('design', sa.String(length=20), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('sha256'),
    )
    op.create_index(op.f('ix_sweeps_name'), 'sweeps', ['name'], unique=False)
    op.create_table(
        'sweep_points',
        sa.Column('sweep_id', sa.Integer(), nullable=False),
        sa.Column('point', sa.Integer(), nullable=False),
        sa.Column('scenario_id', sa.Integer(), nullable=False),
        sa.Column('factors', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['scenario_id'], ['scenarios.id']),
        sa.ForeignKeyConstraint(['sweep_id'], ['sweeps.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('sweep_id', 'point'),
    )
    op.create_index(op.f('ix_sweep_points_scenario_id'), 'sweep_points', ['scenario_id'], unique=False)


def downgrade() -> None:
    """Drop the sweeps tables."""
    op.drop_index(op.f('ix_sweep_points_scenario_id'), table_name='sweep_points')
    op.drop_table('sweep_points')
    op.drop_index(op.f('ix_sweeps_name'), table_name='sweeps')
    op.drop_table('sweeps')
