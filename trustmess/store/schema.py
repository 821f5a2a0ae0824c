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
    # Both NULL only for a deleted account (a tombstone: see deleted_at).
    Column("password_hash", Text),
    Column("display_name", String(64)),
    Column("bio", String(500), nullable=False, server_default=""),
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    Column("is_admin", Boolean, nullable=False, server_default=text("false")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    # Optional; kept as typed. Unverified it is only a claim, so uniqueness (in any case) binds
    # verified addresses only: claiming someone's address neither fails (which would tell
    # that it is in use) nor blocks its owner (store/users.py, http/recovery.py).
    Column("email", String(254)),
    Column("email_verified_at", DateTime(timezone=True)),
    # Set when the account was deleted: the row stays, so the user ids in message history still
    # resolve and the username stays taken (nobody can sign up as the deleted user).
    Column("deleted_at", DateTime(timezone=True)),
    CheckConstraint("username = lower(username)", name="username_lower"),
    CheckConstraint("email IS NOT NULL OR email_verified_at IS NULL", name="email_verified"),
    CheckConstraint(
        "deleted_at IS NOT NULL OR (password_hash IS NOT NULL AND display_name IS NOT NULL)",
        name="live_has_credentials",
    ),
    # Consent (store/consent.py): who may open a direct conversation with the user, and who may
    # add them to a group without an invitation.
    Column("direct_policy", String(8), nullable=False, server_default="anyone"),
    Column("group_policy", String(8), nullable=False, server_default="anyone"),
    CheckConstraint("direct_policy IN ('anyone', 'contacts')", name="direct_policy"),
    CheckConstraint("group_policy IN ('anyone', 'contacts')", name="group_policy"),
    # Who sees my presence (delivery/presence.py): "everyone" is the users I share a
    # conversation with, and my contacts.
    Column("presence_visibility", String(8), nullable=False, server_default="everyone"),
    # When the user's last socket closed: written once per offline transition, not per message.
    Column("last_seen", DateTime(timezone=True)),
    CheckConstraint(
        "presence_visibility IN ('everyone', 'contacts', 'nobody')", name="presence_visibility"
    ),
)

Index(
    "uq_users_email_verified",
    func.lower(users.c.email).label("lower_email"),
    unique=True,
    postgresql_where=users.c.email_verified_at.isnot(None),
)
# Unverified claims of an address, cleared when someone verifies it.
Index("ix_users_email_lower", func.lower(users.c.email).label("lower_email"))

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

# Single-use, expiring links mailed to an address: "verify" proves the address belongs to the
# user, "reset" sets a new password. Only the SHA-256 of a token is stored; ``email`` is the
# address it was mailed to, which must still be the account's when it is used.
email_tokens = Table(
    "email_tokens",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column(
        "user_id",
        BigInteger,
        ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("purpose", String(6), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("email", String(254), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
    CheckConstraint("purpose IN ('verify', 'reset')", name="purpose"),
)

# A session (a device): one login and the refresh-token family it started (``id`` is the
# family id, carried by access tokens as ``sid``). Ended sessions keep their row (client and
# address erased) until no access token issued for them can still be valid: each node rebuilds
# its in-memory revocation set from them at start and after a message-bus outage.
sessions = Table(
    "sessions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column(
        "user_id",
        BigInteger,
        ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("last_used_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
    Column("user_agent", String(256)),
    Column("address", String(64)),
    Index("ix_sessions_ended_at", "ended_at", postgresql_where=text("ended_at IS NOT NULL")),
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
    # Bumped by every title or membership change; `conversation_update` events carry it.
    Column("version", BigInteger, nullable=False, server_default=text("1")),
    # A direct conversation whose members have blocked each other (either way): the append
    # statement refuses new messages in it without a query of its own (store/messages.py).
    Column("blocked", Boolean, nullable=False, server_default=text("false")),
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
    # sender_id and deleted_at ride in the key's index: a conversation's unread count (the
    # messages of others after a marker, not deleted) is then an index-only scan, not a read of
    # every unread row (280-680 ms against 5 for 15,833 unread, bench/RESULTS.md). Migration 0009.
    PrimaryKeyConstraint("conversation_id", "seq", postgresql_include=["sender_id", "deleted_at"]),
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

# People (store/contacts.py). An accepted contact is stored in both directions, (a, b) and
# (b, a), so "my contacts" and "is b my contact" are one index probe from either side.
contacts = Table(
    "contacts",
    metadata,
    Column("user_id", BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("contact_id", BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    PrimaryKeyConstraint("user_id", "contact_id"),
    # The cascade when an account is deleted reads by contact_id.
    Index("ix_contacts_contact_id", "contact_id"),
)

# A contact request, pending or declined. A declined one stays (declined_at) for the cooldown;
# its requester keeps seeing it as pending. cancelled_at: the requester withdrew a request that
# had been declined (it no longer sees it, but the cooldown still holds).
contact_requests = Table(
    "contact_requests",
    metadata,
    Column("requester_id", BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("recipient_id", BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("message", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("declined_at", DateTime(timezone=True)),
    Column("cancelled_at", DateTime(timezone=True)),
    PrimaryKeyConstraint("requester_id", "recipient_id"),
    CheckConstraint("requester_id <> recipient_id", name="not_self"),
    Index("ix_contact_requests_recipient_id_created_at", "recipient_id", "created_at"),
)

blocks = Table(
    "blocks",
    metadata,
    Column("blocker_id", BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("blocked_id", BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    PrimaryKeyConstraint("blocker_id", "blocked_id"),
    CheckConstraint("blocker_id <> blocked_id", name="not_self"),
    Index("ix_blocks_blocked_id", "blocked_id"),
)

# An invitation to a group for a user whose group_policy is 'contacts', added by someone who is
# not their contact: they become a member only by accepting (store/invitations.py).
group_invitations = Table(
    "group_invitations",
    metadata,
    Column(
        "conversation_id",
        BigInteger,
        ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("user_id", BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("inviter_id", BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    PrimaryKeyConstraint("conversation_id", "user_id"),
    Index("ix_group_invitations_user_id_created_at", "user_id", "created_at"),
    Index("ix_group_invitations_inviter_id", "inviter_id"),
)
