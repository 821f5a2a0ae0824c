"""The database schema as SQLAlchemy Core tables: the single source Alembic compares against.

Runtime queries do not use these objects (they are plain asyncpg SQL in ``store/``); the tables
exist so that ``alembic check`` can prove the migrations and this file agree.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    literal_column,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

NOW = text("now()")

users = Table(
    "users",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    # Stored lower-cased (the check makes that a rule), so the plain unique constraint is
    # case-insensitive uniqueness.
    Column("username", String(32), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("display_name", String(64), nullable=False),
    Column("bio", String(500), nullable=False, server_default=""),
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    Column("is_admin", Boolean, nullable=False, server_default=text("false")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    # Who sees my presence (delivery/presence.py): "everyone" is the users I share a
    # conversation with, and my contacts.
    Column("presence_visibility", String(8), nullable=False, server_default="everyone"),
    # When the user's last socket closed: written once per offline transition, not per message.
    Column("last_seen", DateTime(timezone=True)),
    CheckConstraint("username = lower(username)", name="username_lower"),
    CheckConstraint(
        "presence_visibility IN ('everyone', 'contacts', 'nobody')", name="presence_visibility"
    ),
)

# The directory's prefix search (store/users.py search_active_users): a range scan of each
# index for "starts with", in any case. text_pattern_ops compares code points, whatever the
# database's collation; only active users are ever searched.
Index(
    "ix_users_username_prefix",
    users.c.username,
    postgresql_ops={"username": "text_pattern_ops"},
    postgresql_where=users.c.is_active,
)
Index(
    "ix_users_display_name_prefix",
    func.lower(users.c.display_name).label("lower_display_name"),
    postgresql_ops={"lower_display_name": "text_pattern_ops"},
    postgresql_where=users.c.is_active,
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column(
        "user_id",
        BigInteger,
        ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("family_id", String(32), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Column("user_agent", String(256)),
)

conversations = Table(
    "conversations",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("kind", String(6), nullable=False),
    Column("title", String(128)),
    Column("created_by", BigInteger, ForeignKey("users.id"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("last_seq", BigInteger, nullable=False, server_default=text("0")),
    Column("last_message_at", DateTime(timezone=True)),
    # "<smaller user id>:<larger user id>" for direct conversations, NULL for groups.
    Column("direct_key", String(41), unique=True),
    CheckConstraint("kind IN ('direct', 'group')", name="kind"),
    CheckConstraint("(kind = 'direct') = (direct_key IS NOT NULL)", name="direct_key"),
)

conversation_members = Table(
    "conversation_members",
    metadata,
    Column(
        "conversation_id",
        BigInteger,
        ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("user_id", BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("role", String(6), nullable=False, server_default="member"),
    Column("joined_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("last_read_seq", BigInteger, nullable=False, server_default=text("0")),
    PrimaryKeyConstraint("conversation_id", "user_id"),
    CheckConstraint("role IN ('owner', 'member')", name="role"),
    # "My conversations" scans by user.
    Index("ix_conversation_members_user_id_conversation_id", "user_id", "conversation_id"),
)

messages = Table(
    "messages",
    metadata,
    Column(
        "conversation_id",
        BigInteger,
        ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("seq", BigInteger, nullable=False),
    Column("id", BigInteger, Identity(), nullable=False, unique=True),
    Column("sender_id", BigInteger, ForeignKey("users.id"), nullable=False),
    Column("client_msg_id", String(64), nullable=False),
    # NULL once deleted for everyone: the text is erased, the row stays as the tombstone that
    # keeps seq order and reply_to references.
    Column("body", Text),
    Column("reply_to_seq", BigInteger),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("edited_at", DateTime(timezone=True)),
    Column("deleted_at", DateTime(timezone=True)),
    PrimaryKeyConstraint("conversation_id", "seq"),
    UniqueConstraint("conversation_id", "sender_id", "client_msg_id"),
    CheckConstraint("seq > 0", name="seq_positive"),
    # Full-text search (store/search.py). The 'simple' configuration: lower-cased words, no
    # stemming or stop words, so every language is searched alike. conversation_id comes first
    # (btree_gin): a search runs once per conversation of the user, and GIN then intersects
    # that conversation's entries with the words' instead of reading every message with a
    # common word (500 ms against 20 ms at p99 on 1M messages, bench/RESULTS.md).
    Index(
        "ix_messages_conversation_id_body_tsv",
        "conversation_id",
        func.to_tsvector(literal_column("'simple'::regconfig"), literal_column("body")),
        postgresql_using="gin",
    ),
)

# Edits, deletions and reactions: entries of the conversation's ordered stream. Each takes the
# next seq of the conversation (conversations.last_seq, the counter messages use), so join's
# replay, the sequencer's gap fill and HTTP ``after`` paging carry them with the messages; the
# messages table and its append statement are untouched. No body is stored here: an edit
# changes messages.body in place, so deleting a message erases every version of its text.
message_changes = Table(
    "message_changes",
    metadata,
    Column(
        "conversation_id",
        BigInteger,
        ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("seq", BigInteger, nullable=False),
    Column("kind", String(8), nullable=False),
    Column("target_seq", BigInteger, nullable=False),
    Column("user_id", BigInteger, ForeignKey("users.id"), nullable=False),
    Column("client_change_id", String(64)),
    Column("emoji", String(32)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    PrimaryKeyConstraint("conversation_id", "seq"),
    ForeignKeyConstraint(
        ["conversation_id", "target_seq"],
        ["messages.conversation_id", "messages.seq"],
        name="fk_message_changes_target_messages",
        ondelete="CASCADE",
    ),
    # NULLs are distinct: changes sent without a client_change_id are not deduplicated by it.
    UniqueConstraint("conversation_id", "user_id", "client_change_id"),
    CheckConstraint("seq > 0", name="seq_positive"),
    CheckConstraint("kind IN ('edit', 'delete', 'react', 'unreact')", name="kind"),
    CheckConstraint("(emoji IS NOT NULL) = (kind IN ('react', 'unreact'))", name="emoji"),
    Index("ix_message_changes_conversation_id_target_seq", "conversation_id", "target_seq"),
)

# The reactions in force: one row per (message, emoji, user). ``seq`` is the react entry that
# added it (a repeated react answers with it).
message_reactions = Table(
    "message_reactions",
    metadata,
    Column("conversation_id", BigInteger, nullable=False),
    Column("target_seq", BigInteger, nullable=False),
    Column("emoji", String(32), nullable=False),
    Column("user_id", BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    PrimaryKeyConstraint("conversation_id", "target_seq", "emoji", "user_id"),
    ForeignKeyConstraint(
        ["conversation_id", "target_seq"],
        ["messages.conversation_id", "messages.seq"],
        name="fk_message_reactions_target_messages",
        ondelete="CASCADE",
    ),
)

# TEMPORARY: the contacts branch's migration 0007 owns this table; remove at merge
# Both directions of each contact pair are stored (presence reads "my contacts" by user_id).
contacts = Table(
    "contacts",
    metadata,
    Column("user_id", BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("contact_id", BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    PrimaryKeyConstraint("user_id", "contact_id"),
)
