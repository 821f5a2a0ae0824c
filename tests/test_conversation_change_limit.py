"""Changes to a conversation (rename, add or remove members) are rate limited per
conversation (#4): each change sends a ``conversation`` event to every online member, so a
member renaming a big group in a loop would multiply traffic by its size."""

from __future__ import annotations

from tests.conftest import error_of


async def test_changes_beyond_the_conversation_budget_get_429(
    make_client, make_user, make_group
) -> None:
    client = await make_client(conversation_change_rate_per_min=0.01, conversation_change_burst=3)
    alice, bob, carol, stranger = [await make_user() for _ in range(4)]
    cid = await make_group(alice, bob, carol)
    other = await make_group(alice, bob)
    # A stranger's refused attempts spend nothing of the conversation's budget.
    for _ in range(5):
        resp = await client.patch(
            f"/conversations/{cid}", json={"title": "x"}, headers=stranger.headers
        )
        assert resp.status == 404
    for n in range(3):
        resp = await client.patch(
            f"/conversations/{cid}", json={"title": f"t{n}"}, headers=alice.headers
        )
        assert resp.status == 200, await resp.text()
    for attempt in (
        client.patch(f"/conversations/{cid}", json={"title": "no"}, headers=bob.headers),
        client.post(
            f"/conversations/{cid}/members", json={"user_ids": [stranger.id]}, headers=bob.headers
        ),
        client.delete(f"/conversations/{cid}/members/{carol.id}", headers=alice.headers),
    ):
        resp = await attempt
        error = await error_of(resp, 429)
        assert error["code"] == "rate_limited"
        assert int(resp.headers["Retry-After"]) >= 1
    # Nothing changed, leaving is always possible, and other conversations have their own budget.
    shown = await (await client.get(f"/conversations/{cid}", headers=alice.headers)).json()
    assert shown["title"] == "t2" and len(shown["members"]) == 3
    resp = await client.delete(f"/conversations/{cid}/members/{bob.id}", headers=bob.headers)
    assert resp.status == 204
    resp = await client.patch(f"/conversations/{other}", json={"title": "ok"}, headers=bob.headers)
    assert resp.status == 200
