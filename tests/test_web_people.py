"""The People tab in a real Chromium, against a real server: contact requests, contacts with
presence, blocking, group invitations, each side seeing the other's action live.

The server, the browser and the two signed-up people are test_web_browser.py's fixtures (one
server and one browser for this module). Nothing sleeps: Playwright's ``expect`` waits.
"""

from __future__ import annotations

from playwright.sync_api import Locator, Page, expect

from tests import test_web_browser as web
from tests.test_web_browser import Person, screenshot

# test_web_browser.py's fixtures, by the names its tests use: one server and one browser for
# this module, two people signed up for each test.
server, playwright, browser, people = (
    web.server,
    web.playwright_fixture,
    web.browser_fixture,
    web.people,
)


def open_people(person: Person) -> Page:
    page = person.page
    page.get_by_role("tab", name="People").click()
    return page


def find(person: Person, other: Person) -> Locator:
    """Search for ``other`` on the People tab: their result (chat button, contact tools)."""
    page = open_people(person)
    page.get_by_label("Find people").fill(other.username)
    return page.locator("#search-results .person", has_text=f"@{other.username}")


def request_contact(person: Person, other: Person, message: str = "", shot: str = "") -> None:
    """Ask ``other`` from the search results, with ``message`` if any (``shot``: a screenshot
    of the filled form under that name)."""
    result = find(person, other)
    add = f"Add contact: {other.display_name} @{other.username}"
    result.get_by_role("button", name=add).click()
    if message:
        result.get_by_label(f"Message to {other.display_name} (optional)").fill(message)
    if shot:
        screenshot(person.page, shot)
    result.get_by_role("button", name="Send request").click()
    expect(result.locator(".person-tools .state")).to_have_text("Request sent")


def forget_refusals(person: Person, since: int, *statuses: int) -> None:
    """Chromium logs each refused request as a console error: check that those since
    ``since`` are refusals with these statuses, and only those, then drop them (the fixture
    fails a test whose pages logged errors)."""
    refused = person.errors[since:]
    assert refused, "nothing was refused"
    assert all(any(f"status of {status} " in e for status in statuses) for e in refused), refused
    del person.errors[since:]


def contacts(person: Person) -> Locator:
    return person.page.locator("#contact-list li")


def badge(person: Person) -> Locator:
    return person.page.locator("#people-badge")


def test_a_request_with_a_message_is_accepted_live_then_blocked_and_unblocked(
    people: tuple[Person, Person],
) -> None:
    ada, grace = people
    request_contact(ada, grace, "We met at the conference.", shot="people-search")
    expect(ada.page.locator("#outgoing-list li")).to_contain_text(["We met at the conference."])

    # Grace sees it without a reload: the badge on the tab, then the request with its message.
    expect(badge(grace)).to_have_text("1 waiting")
    page = open_people(grace)
    request = page.locator("#incoming-list li")
    expect(request).to_contain_text([f"Ada @{ada.username}"])
    expect(request.locator(".request-message")).to_have_text("“We met at the conference.”")
    screenshot(page, "people-request")
    page.get_by_role("button", name=f"Accept contact request from Ada @{ada.username}").click()
    expect(page.locator("#requests-section")).to_be_hidden()
    expect(badge(grace)).to_be_hidden()

    # Both list each other, online (Ada's presence subscription renews on `accepted`).
    for person, other in ((ada, grace), (grace, ada)):
        expect(contacts(person)).to_have_count(1)
        expect(contacts(person).first.locator(".name")).to_have_text(other.display_name)
        expect(contacts(person).first.locator(".presence")).to_have_text("online")
    expect(ada.page.locator("#outgoing-section")).to_be_hidden()
    screenshot(grace.page, "people")
    # A phone-width screen: the People tab fits, nothing scrolls sideways.
    size = grace.page.viewport_size
    grace.page.set_viewport_size({"width": 360, "height": 740})
    expect(contacts(grace).first.get_by_role("button", name="Block")).to_be_in_viewport()
    assert grace.page.evaluate("document.documentElement.scrollWidth") <= 360
    screenshot(grace.page, "people-phone")
    assert size is not None
    grace.page.set_viewport_size(size)

    # From the contact list to their direct conversation.
    ada.page.get_by_role("button", name=f"Message Grace @{grace.username}").click()
    expect(ada.page.locator("#conversation-title")).to_have_text("Grace")
    ada.send("Hello, contact!")
    expect(ada.page.locator(".msg.mine .status")).to_have_text(["Sent"])

    # Grace blocks Ada: the contact ends on both sides, and Ada's next message is refused.
    open_people(grace)
    grace.page.once("dialog", lambda dialog: dialog.accept())
    grace.page.get_by_role("button", name=f"Block Ada @{ada.username}").click()
    expect(grace.page.locator("#blocked-list li")).to_contain_text([f"Ada @{ada.username}"])
    expect(contacts(grace)).to_have_count(0)
    expect(contacts(ada)).to_have_count(0)
    ada.send("Are you there?")
    expect(ada.page.locator("#composer-count")).to_have_text(
        "Not sent: this direct conversation is blocked: no new messages"
    )
    expect(ada.page.locator(".msg.pending")).to_have_count(0)

    # Unblocked from the list: the conversation works again (contacts they are no longer).
    grace.page.get_by_role("button", name=f"Unblock Ada @{ada.username}").click()
    expect(grace.page.locator("#blocked-section")).to_be_hidden()
    ada.send("Back again")
    grace.page.get_by_role("tab", name="Chats").click()
    grace.open_conversation("Ada")
    expect(grace.bodies()).to_have_text(["Hello, contact!", "Back again"])


def test_a_group_add_without_consent_is_an_invitation_to_accept_or_decline(
    people: tuple[Person, Person],
) -> None:
    ada, grace = people
    grace.page.evaluate(
        "trustmess.api('PATCH', '/users/me', {group_policy: 'contacts', direct_policy: 'contacts'})"
    )
    # A direct conversation she did not consent to is refused, in words.
    logged = len(ada.errors)
    find(ada, grace).get_by_role("button", name=f"Chat with Grace @{grace.username}").click()
    refusal = ada.page.get_by_role("alert").filter(
        has_text="This user does not accept direct conversations from you"
    )
    expect(refusal).to_be_visible()
    # In red, beside the instructions, which stay; the next search clears it.
    expect(ada.page.locator("#search-hint")).to_contain_text("Chat with a person")
    forget_refusals(ada, logged, 403)

    def create_group(title: str) -> None:
        find(ada, grace)
        ada.page.get_by_label(f"Add {grace.display_name} to a new group").check()
        ada.page.get_by_label("Group title").fill(title)
        ada.page.get_by_role("button", name="Create group").click()
        expect(ada.page.locator("#conversation-title")).to_have_text(title)

    create_group("Lunch crew")
    expect(refusal).to_have_count(0)
    # Ada is told where Grace went: invited, not a member yet.
    expect(ada.page.locator("#conversation-notice")).to_have_text(
        "Grace is invited: they join the group when they accept."
    )
    expect(badge(grace)).to_have_text("1 waiting")
    # Not a member until she accepts: nothing in her Chats.
    expect(grace.page.locator(".conversation-item", has_text="Lunch crew")).to_have_count(0)
    page = open_people(grace)
    invitation = page.locator("#invitation-list li")
    expect(invitation.locator(".who")).to_have_text(f"Ada @{ada.username}")
    expect(invitation).to_contain_text(["invited you to “Lunch crew”"])
    screenshot(page, "people-invitation")
    page.get_by_role("button", name="Accept invitation to Lunch crew").click()
    expect(page.locator("#conversation-title")).to_have_text("Lunch crew")
    expect(page.locator(".conversation-item", has_text="Lunch crew")).to_be_visible()
    expect(badge(grace)).to_be_hidden()
    ada.send("Welcome aboard")
    expect(grace.bodies()).to_have_text(["Welcome aboard"])

    create_group("Book club")
    expect(badge(grace)).to_have_text("1 waiting")
    open_people(grace)
    grace.page.get_by_role("button", name="Decline invitation to Book club").click()
    expect(grace.page.locator("#invitations-section")).to_be_hidden()
    expect(badge(grace)).to_be_hidden()
    expect(grace.page.locator(".conversation-item", has_text="Book club")).to_have_count(0)


def test_decline_cancel_remove_reconnect_and_a_refusal_shown_beside_the_button(
    people: tuple[Person, Person],
) -> None:
    ada, grace = people
    # A decline is not told: Ada still sees her request pending, and withdraws it.
    request_contact(ada, grace)
    open_people(grace)
    expect(grace.page.locator("#incoming-list li .hint")).to_have_text("No message.")
    # With the keyboard; the focus then goes on (to the search, the list being empty).
    decline = f"Decline contact request from Ada @{ada.username}"
    grace.page.get_by_role("button", name=decline).press("Enter")
    expect(grace.page.locator("#requests-section")).to_be_hidden()
    expect(grace.page.get_by_label("Find people")).to_be_focused()
    outgoing = ada.page.locator("#outgoing-list li")
    expect(outgoing).to_contain_text([f"Grace @{grace.username}"])
    ada.page.locator("#outgoing-list").get_by_role(
        "button", name=f"Cancel contact request to Grace @{grace.username}"
    ).click()
    expect(ada.page.locator("#outgoing-section")).to_be_hidden()

    # Grace asks, then withdraws: Ada sees both live.
    request_contact(grace, ada, "Second try")
    expect(ada.page.locator("#incoming-list li")).to_contain_text(["Second try"])
    grace.page.locator("#search-results").get_by_role(
        "button", name=f"Cancel contact request to Ada @{ada.username}"
    ).click()
    expect(ada.page.locator("#requests-section")).to_be_hidden()
    expect(badge(ada)).to_be_hidden()

    # A request made while Ada is offline shows after her reconnect (events are not replayed).
    ada.context.set_offline(True)
    expect(ada.page.locator("#connection")).to_have_text("Reconnecting…")
    request_contact(grace, ada, "While you were away")
    ada.context.set_offline(False)
    expect(ada.page.locator("#incoming-list li")).to_contain_text(["While you were away"])
    expect(badge(ada)).to_have_text("1 waiting")
    # Her search results from before follow too: Grace asked.
    ada_result = ada.page.locator("#search-results .person", has_text=f"@{grace.username}")
    expect(ada_result.locator(".state")).to_have_text("Asked to be your contact")
    ada.page.locator("#incoming-list").get_by_role(
        "button", name=f"Accept contact request from Grace @{grace.username}"
    ).click()
    expect(ada_result.locator(".state")).to_have_text("Contact")
    expect(contacts(grace)).to_have_count(1)

    # Removal: both lists empty, live on the other side.
    ada.page.once("dialog", lambda dialog: dialog.accept())
    ada.page.get_by_role("button", name=f"Remove Grace @{grace.username} from contacts").click()
    expect(contacts(ada)).to_have_count(0)
    expect(contacts(grace)).to_have_count(0)
    expect(ada.page.locator("#no-contacts")).to_be_visible()

    # Grace's request budget spent (a burst of 10; a request to nobody spends too): the next
    # request's 429 shows beside its button.
    logged = len(grace.errors)
    grace.page.evaluate(
        """async () => {
            for (let n = 0; n < 10; n++) {
                await trustmess.api('POST', '/contact-requests', {user_id: 987654}).catch(() => {});
            }
        }"""
    )
    result = find(grace, ada)
    result.get_by_role("button", name=f"Add contact: Ada @{ada.username}").click()
    result.get_by_role("button", name="Send request").click()
    expect(result.locator(".error")).to_contain_text("Too many attempts: wait")
    forget_refusals(grace, logged, 404, 429)
