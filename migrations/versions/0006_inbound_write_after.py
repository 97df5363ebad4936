"""inbound_messages.write_after: when a pending YClients attendance write is due again, so that a write
whose task was lost is sent again by the messaging tick

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""
from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

PENDING = sa.text("yclients_write = 'pending'")


def upgrade() -> None:
    with op.batch_alter_table('inbound_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('write_after', sa.DateTime(timezone=True), nullable=True))
    op.create_index('ix_inbound_messages_pending_write', 'inbound_messages', ['write_after'],
                    postgresql_where=PENDING, sqlite_where=PENDING)


def downgrade() -> None:
    op.drop_index('ix_inbound_messages_pending_write', table_name='inbound_messages')
    with op.batch_alter_table('inbound_messages', schema=None) as batch_op:
        batch_op.drop_column('write_after')
