"""drop columns nothing reads: api_keys.last_used_at (never written), whatsapp_sessions.pairing_code_expires_at
(written, never read: a pairing code's lifetime is kept with the code in Redis)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_column('last_used_at')
    with op.batch_alter_table('whatsapp_sessions', schema=None) as batch_op:
        batch_op.drop_column('pairing_code_expires_at')


def downgrade() -> None:
    with op.batch_alter_table('whatsapp_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pairing_code_expires_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True))
