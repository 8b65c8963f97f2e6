"""the trial's assessments, one row per run (assessment_scores) instead of one per participant and week

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-28 10:00:00

Each run's rows of `assessments` become one row of `assessment_scores`: `weeks`, a JSON array of the weeks at
which the run assessed anyone, and `scores`, a JSON array with one array per participant (pid 0, 1, ...) of
the score at each of those weeks, or null where the participant was not assessed. Reading the new row back
gives exactly the rows the old table held. The conversion goes run by run, a few hundred runs at a time.
"""
import json
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: Union[str, Sequence[str], None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

RUNS_AT_ONCE = 200
COMPACT = {'separators': (',', ':')}


def _number(x: float):
    return int(x) if float(x).is_integer() else float(x)


def _pack(rows: list) -> tuple[str, str]:
    """(pid, week, score) rows of one run as the weeks and scores texts."""
    weeks = sorted({w for _, w, _ in rows})
    col = {w: k for k, w in enumerate(weeks)}
    grid = [[None] * len(weeks) for _ in range(max(p for p, _, _ in rows) + 1)]
    for pid, week, score in rows:
        grid[pid][col[week]] = None if score is None else _number(score)
    return json.dumps(weeks, **COMPACT), json.dumps(grid, **COMPACT)


def _unpack(weeks: str, scores: str) -> list[tuple[int, int, float]]:
    ws = json.loads(weeks)
    return [(pid, w, float(s)) for pid, row in enumerate(json.loads(scores)) for w, s in zip(ws, row) if s is not None]


def _copy(conn, source: str, target_rows, select: str, convert) -> None:
    """Move the rows of `source` over to the new form, RUNS_AT_ONCE runs per query."""
    ids = [r[0] for r in conn.execute(sa.text(f'SELECT DISTINCT run_id FROM {source} ORDER BY run_id'))]
    for start in range(0, len(ids), RUNS_AT_ONCE):
        chunk = ids[start:start + RUNS_AT_ONCE]
        rows = conn.execute(sa.text(select).bindparams(sa.bindparam('ids', expanding=True)), {'ids': chunk})
        by_run: dict[int, list] = {}
        for r in rows:
            by_run.setdefault(r[0], []).append(tuple(r[1:]))
        target_rows(convert(by_run))


def upgrade() -> None:
    """Create assessment_scores, move every run's assessments into it, drop assessments."""
    table = op.create_table(
        'assessment_scores',
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.Column('weeks', sa.Text(), nullable=False),
        sa.Column('scores', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('run_id'),
    )
    conn = op.get_bind()
    _copy(conn, 'assessments', lambda rows: rows and op.bulk_insert(table, rows),
          'SELECT run_id, pid, week, score FROM assessments WHERE run_id IN :ids ORDER BY run_id, pid, week',
          lambda by_run: [dict(zip(('run_id', 'weeks', 'scores'), (run, *_pack(rows)))) for run, rows in by_run.items()])
    op.drop_table('assessments')


def downgrade() -> None:
    """Recreate assessments (one row per participant and week), move the rows back, drop assessment_scores."""
    kwargs = {'sqlite_with_rowid': False} if op.get_bind().dialect.name == 'sqlite' else {}
    table = op.create_table(
        'assessments',
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.Column('pid', sa.Integer(), nullable=False),
        sa.Column('week', sa.Integer(), nullable=False),
        sa.Column('score', sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('run_id', 'pid', 'week'),
        **kwargs,
    )
    conn = op.get_bind()
    _copy(conn, 'assessment_scores', lambda rows: rows and op.bulk_insert(table, rows),
          'SELECT run_id, weeks, scores FROM assessment_scores WHERE run_id IN :ids ORDER BY run_id',
          lambda by_run: [{'run_id': run, 'pid': p, 'week': w, 'score': s}
                          for run, [(weeks, scores)] in by_run.items() for p, w, s in _unpack(weeks, scores)])
    op.drop_table('assessment_scores')
