"""The web client in a real Chromium, against a real server: people sign up and chat through the
UI, and the delivery guarantees (nothing lost, nothing twice, in order) hold across reloads,
going offline and token expiry.

One browser and one server per module (each test signs up its own users); Playwright's
``expect`` waits for every condition, nothing sleeps. Screenshots of the main screens go to
``TRUSTMESS_ARTIFACTS`` (default: ``$TMPDIR/trustmess-artifacts``).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import asyncpg
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from tests import conftest
from tests.browser import ARTIFACTS, WebServer, chromium_executable, database_for, start_web_server
from tests.mailserver import Mail, MailServer
from trustmess.cluster.supervisor import free_port

PASSWORD = "correct horse battery"
ALLOWED_ORIGIN = "http://localhost:8"
# Every wait of the UI; generous for a loaded 2-core machine, never reached when all is well.
expect.set_options(timeout=15_000)
_names = itertools.count(1)
T = TypeVar("T")
NETWORK_DOWN = ("ERR_INTERNET_DISCONNECTED", "ERR_CONNECTION_REFUSED")


@pytest.fixture(scope="module")
def server(pg_server: conftest.TestDatabaseServer) -> Iterator[WebServer]:
    for url in database_for(pg_server):
        # A generous send budget: test_history_loads_on_scroll writes 120 messages at once.
        web = start_web_server(
            url,
            allowed_origins=ALLOWED_ORIGIN,
            send_rate_per_s="10000",
            send_burst="10000",
            # test_presence: offline shows after this grace
            presence_grace_s="0.5",
        )
        try:
            yield web
        finally:
            web.stop()


# Named fixtures, so that other browser test modules can import them without shadowing them
# (test_web_settings.py).
@pytest.fixture(scope="module", name="playwright")
def playwright_fixture() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module", name="browser")
def browser_fixture(playwright: Playwright) -> Iterator[Browser]:
    executable = chromium_executable(playwright.chromium.executable_path)
    # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
    browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
    yield browser
    browser.close()


class Person:
    """One person in a browser context of their own (a separate browser profile)."""

    def __init__(self, browser: Browser, url: str, name: str, **context_options: object) -> None:
        self.context: BrowserContext = browser.new_context(**context_options)  # type: ignore[arg-type]
        self.url = url
        self.username = f"{name.lower()}{next(_names)}"
        self.display_name = name
        self.errors: list[str] = []
        self.page = self.new_page()

    def new_page(self) -> Page:
        page = self.context.new_page()
        # A CSP violation or a script error shows up here: the test then fails (see close()).
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on(
            "console",
            lambda message: self.errors.append(message.text) if message.type == "error" else None,
        )
        return page

    def signup(self) -> None:
        page = self.page
        page.goto(self.url)
        form = page.locator("#signup-form")
        form.get_by_label("Username").fill(self.username)
        form.get_by_label("Display name").fill(self.display_name)
        form.get_by_label("Password").fill(PASSWORD)
        form.get_by_role("button", name="Sign up").click()
        expect(page.locator("#app")).to_be_visible()
        expect(page.locator("#connection")).to_have_attribute("data-state", "online")

    def chat_with(self, other: Person) -> None:
        page = self.page
        page.get_by_role("tab", name="People").click()
        page.get_by_label("Find people").fill(other.username)
        page.get_by_role("button", name=f"Chat with {other.display_name} @{other.username}").click()
        expect(page.locator("#conversation-title")).to_have_text(other.display_name)

    def open_conversation(self, title: str) -> None:
        self.page.locator(".conversation-item", has_text=title).click()
        expect(self.page.locator("#conversation-title")).to_have_text(title)

    def send(self, text: str) -> None:
        box = self.page.get_by_label("Message", exact=True)
        box.fill(text)
        box.press("Enter")

    def bodies(self) -> object:
        return self.page.locator("#message-list .msg .body")

    def close(self) -> None:
        close_all(self)


def close_all(*people: Person) -> None:
    """Close every context, then fail if a page logged an error (a CSP violation, a script
    error): all are closed even when one page's errors fail the test."""
    errors = {}
    for person in people:
        # Chromium logs the attempts to reach a server that is offline or down: expected.
        found = [e for e in person.errors if not any(noise in e for noise in NETWORK_DOWN)]
        if found:
            errors[person.display_name] = found
        person.context.close()
    assert errors == {}, f"pages logged errors: {errors}"


@pytest.fixture
def people(browser: Browser, server: WebServer) -> Iterator[tuple[Person, Person]]:
    ada, grace = Person(browser, server.url, "Ada"), Person(browser, server.url, "Grace")
    ada.signup()
    grace.signup()
    yield ada, grace
    close_all(ada, grace)


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def test_two_people_sign_up_and_chat_both_ways(
    browser: Browser, server: WebServer, people: tuple[Person, Person]
) -> None:
    ada, grace = people
    ada.chat_with(grace)
    ada.send("Hello Grace!")
    # Pending, then sent: the server's reply settles it.
    expect(ada.page.locator(".msg.mine .status")).to_have_text(["Sent"])

    # Grace's list shows it live: unread badge and last message.
    item = grace.page.locator(".conversation-item", has_text="Ada")
    expect(item.locator(".badge")).to_have_text("1")
    expect(item.locator(".preview")).to_have_text("Hello Grace!")
    expect(item).to_have_accessible_name("Ada: Hello Grace!, 1 unread")
    grace.open_conversation("Ada")
    expect(grace.bodies()).to_have_text(["Hello Grace!"])
    expect(item.locator(".badge")).to_have_count(0)
    # Grace's ack reaches Ada as a read receipt.
    expect(ada.page.locator(".msg.mine .status")).to_have_text(["Seen"])

    # Typing shows on the other side, and goes when the message arrives.
    grace.page.get_by_label("Message", exact=True).press_sequentially("Hi")
    expect(ada.page.locator("#typing")).to_have_text("Grace is typing…")
    grace.page.get_by_label("Message", exact=True).press("Enter")
    expect(ada.bodies()).to_have_text(["Hello Grace!", "Hi"])
    expect(ada.page.locator("#typing")).to_have_text("")

    # Code points, not UTF-16 units: emoji count as one character each.
    ada.send("Ünïcødé 👩‍💻 ok")
    expect(grace.bodies()).to_have_text(["Hello Grace!", "Hi", "Ünïcødé 👩‍💻 ok"])

    # A reaction and an edit travel as change entries.
    ada.page.get_by_role("button", name="React 👍 to message 2").click()
    expect(grace.page.get_by_role("button", name="React 👍 to message 2 (1)")).to_be_visible()
    ada.page.once("dialog", lambda dialog: dialog.accept("Hello again, Grace!"))
    ada.page.get_by_role("button", name="Edit message 1").click()
    expect(grace.page.locator(".msg[data-seq='1'] .body")).to_have_text("Hello again, Grace!")
    expect(grace.page.locator(".msg[data-seq='1'] .edited")).to_have_text("(edited)")
    ada.page.once("dialog", lambda dialog: dialog.accept())
    ada.page.get_by_role("button", name="Delete message 3").click()
    expect(grace.page.locator(".msg[data-seq='3'] .body")).to_have_text("Message deleted")
    # It was the last message: the list's preview does not keep its words.
    expect(item.locator(".preview")).to_have_text("Message deleted")
    grace.page.get_by_role("button", name="Members").click()
    expect(grace.page.locator("#member-list li")).to_have_count(2)
    screenshot(ada.page, "chat")
    screenshot(grace.page, "chat-members")

    # A group through the user search: both are in it, the title shows on both sides.
    ada.page.get_by_role("tab", name="People").click()
    ada.page.get_by_label("Find people").fill(grace.username)
    ada.page.get_by_label(f"Add {grace.display_name} to a new group").check()
    ada.page.get_by_label("Group title").fill("Lunch crew")
    ada.page.get_by_role("button", name="Create group").click()
    expect(ada.page.locator("#conversation-title")).to_have_text("Lunch crew")
    ada.send("Group hello")
    expect(grace.page.locator(".conversation-item", has_text="Lunch crew")).to_be_visible()
    grace.open_conversation("Lunch crew")
    expect(grace.bodies()).to_have_text(["Group hello"])

    # A phone-width screen: the list and the conversation, one at a time.
    phone = Person(browser, server.url, "Phone", viewport={"width": 390, "height": 780})
    phone.signup()
    phone.chat_with(ada)
    expect(phone.page.locator("#conversation")).to_be_visible()
    expect(phone.page.locator(".sidebar")).to_be_hidden()
    phone.send("From my phone")
    expect(phone.page.locator(".msg.mine .status")).to_have_text(["Sent"])
    screenshot(phone.page, "phone")
    phone.page.get_by_role("button", name="Back to conversations").click()
    expect(phone.page.locator(".sidebar")).to_be_visible()
    # The skip link leads to the message box even while the list hides it.
    phone.page.get_by_role("link", name="Skip to the message box").focus()
    phone.page.keyboard.press("Enter")
    expect(phone.page.get_by_label("Message", exact=True)).to_be_focused()
    phone.close()


def test_group_members_panel(
    browser: Browser, server: WebServer, people: tuple[Person, Person]
) -> None:
    ada, grace = people
    alan = Person(browser, server.url, "Alan")
    alan.signup()
    ada.page.get_by_role("tab", name="People").click()
    ada.page.get_by_label("Find people").fill(grace.username)
    # The tick box is labelled for the eye too, not only for screen readers.
    expect(ada.page.locator("#search-results .pick")).to_have_text("Group")
    ada.page.get_by_label(f"Add {grace.display_name} to a new group").check()
    ada.page.get_by_label("Group title").fill("Compilers")
    ada.page.get_by_role("button", name="Create group").click()
    expect(ada.page.locator("#conversation-title")).to_have_text("Compilers")
    ada.page.get_by_role("button", name="Members").click()
    ada.page.get_by_label("Add people").fill(alan.username)
    ada.page.get_by_role("button", name=f"Add Alan @{alan.username}").click()
    expect(ada.page.locator("#member-list li")).to_have_count(3)
    expect(ada.page.locator("#member-list li", has_text="Ada")).to_contain_text("(you, owner)")
    # Escape closes the panel and gives the focus back to its button.
    ada.page.get_by_label("Add people").press("Escape")
    expect(ada.page.locator("#members-panel")).to_be_hidden()
    expect(ada.page.get_by_role("button", name="Members")).to_be_focused()
    ada.page.keyboard.press("Enter")
    expect(ada.page.locator("#members-panel")).to_be_visible()
    # Alan gets the conversation live; Grace's members panel follows the update event.
    # In a group, "Seen" says by whom until everyone has read it.
    ada.send("Welcome, Alan")
    expect(ada.page.locator(".msg.mine .status")).to_have_text(["Sent"])
    alan.open_conversation("Compilers")
    expect(ada.page.locator(".msg.mine .status")).to_have_text(["Seen by Alan"])
    grace.open_conversation("Compilers")
    expect(ada.page.locator(".msg.mine .status")).to_have_text(["Seen by everyone"])
    grace.page.get_by_role("button", name="Members").click()
    expect(grace.page.locator("#member-list li")).to_have_count(3)
    screenshot(ada.page, "group-members")
    # The owner removes Alan: the group leaves his list.
    ada.page.get_by_role("button", name="Remove Alan from the group").click()
    expect(alan.page.locator(".conversation-item", has_text="Compilers")).to_have_count(0)
    expect(grace.page.locator("#member-list li")).to_have_count(2)
    # Grace leaves.
    grace.page.once("dialog", lambda dialog: dialog.accept())
    grace.page.get_by_role("button", name="Leave group").click()
    expect(grace.page.locator(".conversation-item", has_text="Compilers")).to_have_count(0)
    expect(ada.page.locator("#member-list li")).to_have_count(1)
    # Her open conversation closes with a word why; its members panel (and Leave) go with it,
    # and the focus lands on the way back to the list.
    expect(grace.page.locator("#conversation-notice")).to_have_text(
        "You are no longer in “Compilers”."
    )
    expect(grace.page.locator("#members-panel")).to_be_hidden()
    expect(grace.page.get_by_role("tab", name="Chats")).to_be_focused()
    alan.close()


def test_presence_in_the_members_panel(people: tuple[Person, Person]) -> None:
    ada, grace = people
    ada.chat_with(grace)
    ada.send("are you there?")
    grace.open_conversation("Ada")
    grace.page.get_by_role("button", name="Members").click()
    ada_member = grace.page.locator("#member-list li", has_text="Ada")
    expect(ada_member.locator(".presence")).to_have_text("online")
    ada.page.close()  # her only socket: offline after the grace
    expect(ada_member.locator(".presence")).to_contain_text("last seen")
    ada.page = ada.new_page()
    ada.page.goto(ada.url)
    expect(ada_member.locator(".presence")).to_have_text("online")


def test_a_reload_mid_conversation_loses_and_duplicates_nothing(
    people: tuple[Person, Person],
) -> None:
    ada, grace = people
    ada.chat_with(grace)
    for n in range(1, 4):
        ada.send(f"a{n}")
    expect(ada.bodies()).to_have_text(["a1", "a2", "a3"])
    ada.page.reload()
    # Grace writes while Ada's page is loading again.
    grace.open_conversation("Ada")
    grace.send("g1")
    expect(ada.page.locator("#conversation-title")).to_have_text("Grace")
    expect(ada.page.locator("#connection")).to_have_attribute("data-state", "online")
    expect(ada.bodies()).to_have_text(["a1", "a2", "a3", "g1"])
    ada.send("a4")
    expect(grace.bodies()).to_have_text(["a1", "a2", "a3", "g1", "a4"])
    grace.send("g2")
    expected = ["a1", "a2", "a3", "g1", "a4", "g2"]
    expect(ada.bodies()).to_have_text(expected)
    expect(grace.bodies()).to_have_text(expected)
    expect(ada.page.locator(".msg.mine .status").last).to_have_text("Seen")
    # Two days on, the times of these messages say their date too, not only the hour; and
    # the read receipt survives the reload (GET /conversations/{id}/read).
    ada.page.clock.set_system_time(time.time() + 2 * 86400)
    ada.page.reload()
    expect(ada.bodies()).to_have_text(expected)
    expect(ada.page.locator(".msg.mine .status").last).to_have_text("Seen")
    year = time.strftime("%Y", time.gmtime())
    expect(ada.page.locator(".msg time").first).to_contain_text(year)


def test_history_loads_on_scroll(people: tuple[Person, Person]) -> None:
    ada, grace = people
    ada.chat_with(grace)
    cid = int(ada.page.evaluate("location.hash.slice(2)"))
    # 120 messages over HTTP (through the SDK's api(), with Ada's token), in order.
    ada.page.evaluate(
        """async (cid) => {
            for (let n = 1; n <= 120; n++) {
                await trustmess.api('POST', `/conversations/${cid}/messages`,
                                    {client_msg_id: `h${n}`, body: `history ${n}`});
            }
        }""",
        cid,
    )
    grace.open_conversation("Ada")
    bodies = grace.bodies()
    expect(bodies).to_have_count(50)
    expect(bodies.last).to_have_text("history 120")
    # Scrolling to the top loads the page before, keeping the order.
    for shown in (100, 120):
        grace.page.locator("#messages").evaluate("box => { box.scrollTop = 0; }")
        expect(bodies).to_have_count(shown)
    expect(bodies).to_have_text([f"history {n}" for n in range(1, 121)])
    expect(grace.page.locator("#history-status")).to_have_text("Beginning of the conversation")

    # Limits in code points, as the server counts: 4000 emoji (8000 UTF-16 units) are one
    # message; 4001 are refused before they are sent.
    refused = grace.page.evaluate(
        """(cid) => {
            trustmess.send(cid, '😀'.repeat(4000));
            try { trustmess.send(cid, '😀'.repeat(4001)); } catch (e) { return e.code; }
        }""",
        cid,
    )
    assert refused == "too_large"
    expect(ada.page.locator(".msg .body").last).to_have_text("😀" * 4000)

    # The profile, with the keyboard: Escape closes the dialog, Save keeps the change.
    grace.page.get_by_role("button", name="Profile").click()
    dialog = grace.page.get_by_role("dialog", name="Profile")
    expect(dialog.get_by_label("Display name")).to_have_value("Grace")
    grace.page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    grace.page.get_by_role("button", name="Profile").click()
    dialog.get_by_label("Bio").fill("Rear admiral, compiler writer")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    grace.page.get_by_role("button", name="Profile").click()
    expect(dialog.get_by_label("Bio")).to_have_value("Rear admiral, compiler writer")
    screenshot(grace.page, "profile")


def test_offline_and_back_every_message_arrives_once_in_order(
    people: tuple[Person, Person],
) -> None:
    ada, grace = people
    ada.chat_with(grace)
    ada.send("before")
    grace.open_conversation("Ada")
    expect(grace.bodies()).to_have_text(["before"])

    grace.context.set_offline(True)
    expect(grace.page.locator("#connection")).to_have_text("Reconnecting…")
    sent_by_ada = [f"while away {n}" for n in range(1, 6)]
    for text in sent_by_ada:
        ada.send(text)
    # Grace writes while offline: pending, delivered after the reconnect.
    grace.send("written offline 1")
    grace.send("written offline 2")
    expect(grace.page.locator(".msg.pending .status")).to_have_text(["Sending…", "Sending…"])
    # Marked by a dashed border, not by fading the words out of legibility.
    expect(grace.page.locator(".msg.pending").first).to_have_css("opacity", "1")
    expect(grace.page.locator(".msg.pending").first).to_have_css("border-top-style", "dashed")
    screenshot(grace.page, "reconnecting")
    expect(ada.page.locator(".msg.pending")).to_have_count(0)  # Ada's are stored: seqs 2-6

    grace.context.set_offline(False)
    expect(grace.page.locator("#connection")).to_have_attribute("data-state", "online")
    expected = ["before", *sent_by_ada, "written offline 1", "written offline 2"]
    expect(grace.bodies()).to_have_text(expected)
    expect(ada.bodies()).to_have_text(expected)
    expect(grace.page.locator(".msg.pending")).to_have_count(0)

    # Twice more, quickly: still exactly once each, in order.
    for round_ in (1, 2):
        grace.context.set_offline(True)
        ada.send(f"round {round_}")
        grace.context.set_offline(False)
    expected += ["round 1", "round 2"]
    expect(grace.bodies()).to_have_text(expected)


def test_sends_made_offline_survive_closing_the_page(people: tuple[Person, Person]) -> None:
    ada, grace = people
    grace.chat_with(ada)
    grace.send("first")
    expect(grace.page.locator(".msg.mine .status")).to_have_text(["Sent"])
    grace.context.set_offline(True)
    expect(grace.page.locator("#connection")).to_have_text("Reconnecting…")
    grace.send("kept in localStorage")
    expect(grace.page.locator(".msg.pending")).to_have_count(1)
    # The page goes away with the message unsent; the next one resends it (same client_msg_id).
    grace.page.close()
    grace.context.set_offline(False)
    grace.page = grace.new_page()
    grace.page.goto(grace.url)
    grace.open_conversation("Ada")
    expect(grace.bodies()).to_have_text(["first", "kept in localStorage"])
    ada.open_conversation("Grace")
    expect(ada.bodies()).to_have_text(["first", "kept in localStorage"])
    expect(grace.page.locator(".msg.pending")).to_have_count(0)


def test_an_expired_access_token_is_refreshed_unnoticed(
    browser: Browser, pg_server: conftest.TestDatabaseServer
) -> None:
    for url in database_for(pg_server):
        short = start_web_server(url, access_token_ttl_s="10")
        ada, grace = Person(browser, short.url, "Ada"), Person(browser, short.url, "Grace")
        try:
            ada.signup()
            grace.signup()
            ada.chat_with(grace)
            ada.send("one")
            # A second tab of Ada's shares the stored tokens: both refresh, one at a time (a
            # refresh token spent twice would revoke the session, and both would be logged out).
            second_tab = ada.new_page()
            second_tab.goto(short.url)
            expect(second_tab.locator("#connection")).to_have_attribute("data-state", "online")
            for tab in (ada.page, second_tab):
                tab.evaluate(
                    "window.states = [];"
                    "trustmess.addEventListener('state', (e) => states.push(e.detail.state))"
                )
            # Two token lifetimes with the page open: the SDK refreshes ahead of expiry and
            # extends the socket (auth frame), so the server never closes it (4002).
            deadline = time.monotonic() + 21
            refreshed = ada.page.evaluate("trustmess.session.access_token")
            while time.monotonic() < deadline:
                ada.page.wait_for_timeout(500)  # real time must pass: the server's clock
            assert ada.page.evaluate("trustmess.session.access_token") != refreshed
            for tab in (ada.page, second_tab):
                states = tab.evaluate("states")
                assert states == [], f"the socket dropped: {states}\n" + "".join(short.log[-30:])
                expect(tab.locator("#auth")).to_be_hidden()
            second_tab.close()
            ada.send("two")
            grace.open_conversation("Ada")
            expect(grace.bodies()).to_have_text(["one", "two"])

            # The page closed past the token's expiry (a laptop asleep): reopened, it refreshes
            # first and shows the conversations, not the login form.
            ada.page.close()
            grace.page.wait_for_timeout(11_000)  # the stored access token expires meanwhile
            ada.page = ada.new_page()
            ada.page.goto(short.url)
            expect(ada.page.locator("#connection")).to_have_attribute("data-state", "online")
            expect(ada.page.locator("#auth")).to_be_hidden()
            ada.open_conversation("Grace")
            ada.send("three")
            expect(grace.bodies()).to_have_text(["one", "two", "three"])
            faults = [line for line in short.log if "Traceback" in line or "ERROR" in line]
            assert faults == []
        finally:
            short.stop()
            close_all(ada, grace)


def test_a_server_restart_is_a_reconnect_that_loses_nothing(
    browser: Browser, pg_server: conftest.TestDatabaseServer
) -> None:
    """The server goes away (1001 to every socket) and comes back on the same port: the page
    shows "Reconnecting…", backs off, resumes, and sends what was written meanwhile."""
    for url in database_for(pg_server):
        first = start_web_server(url)
        port = first.url.rsplit(":", 1)[1]
        ada, grace = Person(browser, first.url, "Ada"), Person(browser, first.url, "Grace")
        second = None
        try:
            ada.signup()
            grace.signup()
            ada.chat_with(grace)
            ada.send("before the restart")
            grace.open_conversation("Ada")
            expect(grace.bodies()).to_have_text(["before the restart"])
            first.stop()
            expect(ada.page.locator("#connection")).to_have_text("Reconnecting…")
            ada.send("written while the server was down")
            second = start_web_server(url, port=port)
            for person in (ada, grace):
                expect(person.page.locator("#connection")).to_have_attribute("data-state", "online")
            expected = ["before the restart", "written while the server was down"]
            expect(grace.bodies()).to_have_text(expected)
            expect(ada.bodies()).to_have_text(expected)
            expect(ada.page.locator(".msg.pending")).to_have_count(0)
        finally:
            first.stop()  # a no-op once stopped
            if second is not None:
                second.stop()
            close_all(ada, grace)


def test_logging_out_everywhere_ends_the_session_on_other_devices(
    browser: Browser, server: WebServer
) -> None:
    """The socket closed with 4001 (session revoked), the refresh refused: the page shows the
    login form and says why, instead of reconnecting in a loop."""
    laptop = Person(browser, server.url, "Ada")
    laptop.signup()
    phone = Person(browser, server.url, "Ada")
    phone.page.goto(server.url)
    form = phone.page.locator("#login-form")
    form.get_by_label("Username").fill(laptop.username)
    form.get_by_label("Password").fill(PASSWORD)
    form.get_by_role("button", name="Log in").click()
    expect(phone.page.locator("#connection")).to_have_attribute("data-state", "online")
    phone.page.evaluate("trustmess.api('POST', '/auth/logout-all')")
    expect(laptop.page.locator("#auth")).to_be_visible()
    expect(laptop.page.get_by_role("alert").first).to_have_text(
        "You signed out on every device: log in again."
    )
    laptop.errors.clear()  # Chromium logs the refused refresh (401)
    phone.errors.clear()
    close_all(laptop, phone)


def test_cors_in_a_real_browser(browser: Browser, server: WebServer) -> None:
    """A page on an allowed origin may call the API (preflight included); another may not."""
    # The pages are not on the loopback address the server is on: Chromium's Local Network
    # Access asks the user first. Granted, so that what remains is the server's CORS answer.
    context = browser.new_context(permissions=["local-network-access"])
    try:
        page = context.new_page()
        blocked: list[str] = []
        page.on("console", lambda message: blocked.append(message.text))
        for origin in (ALLOWED_ORIGIN, "http://localhost:9"):
            # The page is served by Playwright under that origin; its requests go to the server.
            context.route(f"{origin}/", lambda route: route.fulfill(body="<!doctype html><p>"))
        script = """async (url) => {
            try {
                const r = await fetch(url + '/users/me', {headers: {Authorization: 'Bearer x'}});
                return [r.status, r.headers.get('WWW-Authenticate')];
            } catch (e) { return ['blocked']; }
        }"""
        page.goto(f"{ALLOWED_ORIGIN}/")
        assert page.evaluate(script, server.url) == [401, "Bearer"]
        page.goto("http://localhost:9/")
        assert page.evaluate(script, server.url) == ["blocked"]
        assert any("blocked by CORS policy" in line for line in blocked), blocked
    finally:
        context.close()


def test_the_login_screen(browser: Browser, server: WebServer) -> None:
    person = Person(browser, server.url, "Newcomer")
    page = person.page
    response = page.goto(server.url)
    assert response is not None
    assert "script-src 'self'" in response.headers["content-security-policy"]
    # Keyboard only: a wrong login is reported, in an alert for screen readers.
    page.get_by_label("Username").first.focus()
    page.keyboard.type("nobody")
    page.keyboard.press("Tab")
    page.keyboard.type("wrong password")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert").first).to_have_text("Wrong username or password")
    screenshot(page, "login")
    person.errors.clear()  # the 401 of the wrong login is logged by Chromium
    # The sign-up form says its rules before they are broken, and Chromium's complaint names
    # them (not only "Please match the requested format.").
    signup = page.locator("#signup-form")
    username = signup.get_by_label("Username")
    expect(username).to_have_accessible_description(
        "3 to 32 letters (a to z), digits, dots or underscores. People find you by it."
    )
    expect(signup.get_by_label("Password")).to_have_accessible_description("At least 8 characters.")
    username.fill("al")
    assert "digits, dots or underscores" in username.evaluate("input => input.validationMessage")
    # Sign up, log out (the refresh token is revoked), log in again.
    person.signup()
    page.get_by_role("button", name="Log out").click()
    expect(page.locator("#auth")).to_be_visible()
    assert page.evaluate("localStorage.getItem('trustmess:session')") is None
    form = page.locator("#login-form")
    form.get_by_label("Username").fill(person.username)
    form.get_by_label("Password").fill(PASSWORD)
    form.get_by_label("Password").press("Enter")
    expect(page.locator("#connection")).to_have_attribute("data-state", "online")
    person.close()


class MailInThread:
    """tests/mailserver.py's aiosmtpd server on an event loop of its own thread: Playwright's
    sync API owns this thread's loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = MailServer()
        self._run(self.server.start())

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=20)

    def wait_for(self, count: int, *, to: str | None = None) -> list[Mail]:
        return self._run(self.server.wait_for(count, to=to))

    def stop(self) -> None:
        self._run(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def start_mailing_server(database_url: str, mail: MailInThread) -> WebServer:
    """A server whose mails go to ``mail`` and whose links (public URL) point at itself."""
    port = free_port("127.0.0.1")
    return start_web_server(
        database_url,
        port=str(port),
        smtp_url=mail.server.url,
        public_url=f"http://127.0.0.1:{port}",
    )


def _fetchval_in_thread(dsn: str, query: str, *args: object) -> object:
    async def fetch() -> object:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(fetch())).result()


def test_the_mailed_links_verify_the_address_and_reset_the_password(
    browser: Browser, pg_server: conftest.TestDatabaseServer
) -> None:
    """The pages the mails link to: ``/verify-email#token=…`` verifies the address, "Forgot
    password?" mails a ``/reset-password#token=…`` link whose page sets a new password. A server
    of its own, whose public URL is its own address and whose mails go to a real SMTP server."""
    mail = MailInThread()
    for database_url in database_for(pg_server):
        web = start_mailing_server(database_url, mail)
        # A username of 8+ characters: "the username" is then a password the form lets through.
        ada = Person(browser, web.url, "Adalovelace")
        try:
            ada.signup()
            page = ada.page
            user_id = page.evaluate("window.trustmess.user.id")
            # A new address is mailed a verification link; the link's page redeems it.
            page.evaluate(
                "p => window.trustmess.api("
                "'PATCH', '/users/me', {email: 'ada@example.org', current_password: p})",
                PASSWORD,
            )
            [verify] = mail.wait_for(1)
            url, token = verify.link()
            assert url == f"{web.url}/verify-email"
            page.goto(f"{url}#token={token}")
            expect(page.locator("#app-notice")).to_have_text("Your email address is verified.")
            assert page.url == f"{web.url}/"  # the token left the address bar
            verified_at = _fetchval_in_thread(
                database_url, "SELECT email_verified_at FROM users WHERE id = $1", user_id
            )
            assert verified_at is not None

            # Forgot password (signed out): the same answer whatever the name; a mail here.
            page.get_by_role("button", name="Log out").click()
            page.get_by_role("link", name="Forgot password?").click()
            page.get_by_label("Username or email").fill(ada.username)
            page.get_by_role("button", name="Mail me a reset link").click()
            expect(page.locator("#auth-notice")).to_contain_text("If an account matches")
            reset = mail.wait_for(2)[1]
            url, token = reset.link()
            assert url == f"{web.url}/reset-password"
            page.goto(f"{url}#token={token}")
            form = page.locator("#reset-form")
            expect(form).to_be_visible()
            assert page.url == f"{web.url}/reset-password"
            # A password against the rules: its message; the token stays usable.
            form.get_by_label("New password").fill(ada.username)
            form.get_by_label("New password").press("Enter")
            expect(page.locator("#auth-error")).to_contain_text("Password: must")
            form.get_by_label("New password").fill("a brand new secret")
            form.get_by_label("New password").press("Enter")
            expect(page.locator("#auth-notice")).to_contain_text("Your password is changed")
            login = page.locator("#login-form")
            login.get_by_label("Username").fill(ada.username)
            login.get_by_label("Password").fill("a brand new secret")
            login.get_by_role("button", name="Log in").click()
            expect(page.locator("#app")).to_be_visible()

            # The link works once: opened again, the page says so and offers a new one.
            page.get_by_role("button", name="Log out").click()
            page.goto(f"{url}#token={token}")
            page.locator("#reset-form").get_by_label("New password").fill("yet another secret")
            page.locator("#reset-form").get_by_label("New password").press("Enter")
            expect(page.locator("#auth-error")).to_contain_text("expired or was used")
            expect(page.locator("#forgot-form")).to_be_visible()
            # Chromium logs the two 422 answers above (the password, the spent token): expected.
            refused = [e for e in ada.errors if "status of 422" in e]
            assert len(refused) == 2, ada.errors
            ada.errors = [e for e in ada.errors if e not in refused]
        finally:
            ada.close()
            web.stop()
            mail.stop()
