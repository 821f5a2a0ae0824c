"""Consent: who may reach a user. The profile's ``direct_policy`` and ``group_policy``, and the
checks a direct conversation's creation and a group add make against them (with blocks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trustmess.store.users import Db

POLICIES = ("anyone", "contacts")


@dataclass(frozen=True, slots=True)
class Consent:
    """A user's consent settings: ``anyone`` or ``contacts`` each."""

    direct_policy: str
    group_policy: str

    def to_json(self) -> dict[str, Any]:
        return {"direct_policy": self.direct_policy, "group_policy": self.group_policy}


@dataclass(frozen=True, slots=True)
class GroupAdds:
    """How a group add of some users by ``adder`` goes: ``members`` join at once, ``invited``
    get an invitation, ``refused`` (they blocked the adder) get nothing, though the adder is
    told they were invited, as for the others who did not consent."""

    members: list[int]
    invited: list[int]
    refused: list[int]


async def get_consent(db: Db, user_id: int) -> Consent | None:
    row = await db.fetchrow("SELECT direct_policy, group_policy FROM users WHERE id = $1", user_id)
    return None if row is None else Consent(row["direct_policy"], row["group_policy"])


async def update_consent(
    db: Db, user_id: int, *, direct_policy: str | None, group_policy: str | None
) -> Consent | None:
    """Set the given policies (None keeps the stored value)."""
    row = await db.fetchrow(
        "UPDATE users SET direct_policy = coalesce($2, direct_policy), "
        "group_policy = coalesce($3, group_policy), updated_at = now() WHERE id = $1 "
        "RETURNING direct_policy, group_policy",
        user_id,
        direct_policy,
        group_policy,
    )
    return None if row is None else Consent(row["direct_policy"], row["group_policy"])


async def direct_refusal(db: Db, user_id: int, other_id: int) -> str | None:
    """Why ``user_id`` may not open a direct conversation with ``other_id``: ``blocked_other``
    (the caller blocked them), ``not_allowed`` (their direct_policy, or their block: the same
    answer), or None when it may."""
    row = await db.fetchrow(
        "SELECT u.direct_policy, "
        "  EXISTS (SELECT 1 FROM contacts WHERE user_id = $2 AND contact_id = $1) AS contact, "
        "  EXISTS (SELECT 1 FROM blocks WHERE blocker_id = $2 AND blocked_id = $1) AS blocked, "
        "  EXISTS (SELECT 1 FROM blocks WHERE blocker_id = $1 AND blocked_id = $2) AS blocking "
        "FROM users u WHERE u.id = $2",
        user_id,
        other_id,
    )
    if row is None:
        return "not_allowed"
    if row["blocking"]:
        return "blocked_other"
    if row["blocked"] or (row["direct_policy"] == "contacts" and not row["contact"]):
        return "not_allowed"
    return None


async def sort_group_adds(db: Db, adder_id: int, user_ids: list[int]) -> GroupAdds:
    """Sort the users ``adder_id`` adds to a group by what their consent allows, in one query:
    members (group_policy ``anyone``, or the adder is their contact), invited, refused (they
    blocked the adder). Order is kept within each list."""
    if not user_ids:
        return GroupAdds([], [], [])
    rows = await db.fetch(
        "SELECT u.id, u.group_policy, "
        "  EXISTS (SELECT 1 FROM contacts c WHERE c.user_id = u.id AND c.contact_id = $1) "
        "    AS contact, "
        "  EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = u.id AND b.blocked_id = $1) "
        "    AS blocked "
        "FROM users u WHERE u.id = ANY($2::bigint[])",
        adder_id,
        user_ids,
    )
    verdict = {}
    for row in rows:
        if row["blocked"]:
            verdict[row["id"]] = "refused"
        elif row["group_policy"] == "anyone" or row["contact"]:
            verdict[row["id"]] = "members"
        else:
            verdict[row["id"]] = "invited"
    adds = GroupAdds([], [], [])
    for user_id in user_ids:
        # Unknown ids are refused by the caller before; one gone meanwhile is added to nothing.
        getattr(adds, verdict.get(user_id, "refused")).append(user_id)
    return adds
