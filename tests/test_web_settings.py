"""The web client's Settings dialog in a real Chromium, against a real server that mails through
a real SMTP server: signed-in devices, the password, the email address, privacy and deleting the
account. A second browser context of the same user is the user's other device.

The browser and the page helpers are test_web_browser.py's; this module has a server of its own
(with mail). Playwright's ``expect`` waits for every condition, nothing sleeps.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests import conftest
from tests.browser import WebServer, database_for
from tests.test_web_browser import (
    PASSWORD,
    MailInThread,
    Person,
    browser_fixture,  # noqa: F401 (a fixture of this module too)
    close_all,
    playwright_fixture,  # noqa: F401 (a fixture of this module too)
    screenshot,
    start_mailing_server,
)

NEW_PASSWORD = "a brand new secret"
# What Chromium logs for every 4xx answer: these tests provoke them (wrong passwords, ended
# sessions, refused refreshes) and check what the page shows instead.
REFUSED = "the server responded with a status of 4"


@pytest.fixture(scope="module")
def mail() -> Iterator[MailInThread]:
    mail = MailInThread()
    yield mail
    mail.stop()


@pytest.fixture(scope="module")
def server(pg_server: conftest.TestDatabaseServer, mail: MailInThread) -> Iterator[WebServer]:
    for url in database_for(pg_server):
        web = start_mailing_server(url, mail)
        try:
            yield web
        finally:
            web.stop()


@pytest.fixture
def ada(browser: Browser, server: WebServer) -> Iterator[Person]:
    ada = Person(browser, server.url, "Ada")
    ada.signup()
    yield ada
    close_refusing(ada)


def close_refusing(*people: Person) -> None:
    """``close_all``, apart from the 4xx answers these tests ask for."""
    for person in people:
        person.errors = [e for e in person.errors if REFUSED not in e]
    close_all(*people)


def other_device(browser: Browser, person: Person, **context_options: object) -> Person:
    """The same user signed in on a browser of their own (another session)."""
    device = Person(browser, person.url, person.display_name, **context_options)
    device.username = person.username
    log_in(device.page, person.username, PASSWORD, goto=person.url)
    expect(device.page.locator("#connection")).to_have_attribute("data-state", "online")
    return device


def log_in(page: Page, username: str, password: str, *, goto: str | None = None) -> None:
    if goto:
        page.goto(goto)
    form = page.locator("#login-form")
    form.get_by_label("Username").fill(username)
    form.get_by_label("Password").fill(password)
    form.get_by_role("button", name="Log in").click()


def open_settings(page: Page) -> Locator:
    page.get_by_role("button", name="Settings").click()
    dialog = page.get_by_role("dialog", name="Settings")
    expect(dialog).to_be_visible()
    return dialog


def signed_out_with(person: Person, reason: str) -> None:
    """The page shows the login screen and says why the session ended."""
    expect(person.page.locator("#auth")).to_be_visible()
    expect(person.page.locator("#auth-error")).to_have_text(reason)
    expect(person.page.get_by_role("dialog", name="Settings")).to_be_hidden()


def api(server: WebServer, method: str, path: str, token: str) -> Any:
    """A plain HTTP call from outside the browser: what the server has stored."""
    request = urllib.request.Request(
        server.url + path, method=method, headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_ending_another_device_signs_it_out_with_the_reason(
    browser: Browser,
    ada: Person,
) -> None:
    phone = other_device(browser, ada, viewport={"width": 390, "height": 780})
    try:
        # Keyboard only: the Settings button, then Escape closes the dialog.
        ada.page.get_by_role("button", name="Settings").focus()
        ada.page.keyboard.press("Enter")
        dialog = ada.page.get_by_role("dialog", name="Settings")
        expect(dialog).to_be_visible()
        sessions = dialog.get_by_role("list", name="Signed-in devices").get_by_role("listitem")
        expect(sessions).to_have_count(2)
        expect(sessions.filter(has_text="This device")).to_have_count(1)
        expect(sessions.first).to_contain_text("Chrome on Linux This device")
        expect(sessions.first).to_contain_text("127.0.0.1")
        screenshot(ada.page, "settings")
        ada.page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()

        # The same dialog fits a phone's screen.
        phone_dialog = open_settings(phone.page)
        # Nothing sticks out sideways: no horizontal scrolling on a phone.
        assert phone_dialog.evaluate("d => d.scrollWidth <= d.clientWidth && d.clientWidth <= 390")
        screenshot(phone.page, "settings-phone")
        phone.page.get_by_role("button", name="Close").click()

        # Ending the phone's session from the list: the phone lands on the login screen.
        dialog = open_settings(ada.page)
        other = sessions.filter(has_not_text="This device")
        other.get_by_role("button", name="End the session of Chrome on Linux").click()
        signed_out_with(phone, "This session was ended from another of your devices: log in again.")
        expect(sessions).to_have_count(1)
        expect(dialog.locator("#sessions-status")).to_have_text(
            "Ended the session of Chrome on Linux."
        )
        expect(dialog.get_by_role("button", name="Sign out everywhere else")).to_be_disabled()

        # Signed in again, then "Sign out everywhere else".
        log_in(phone.page, ada.username, PASSWORD)
        expect(phone.page.locator("#connection")).to_have_attribute("data-state", "online")
        ada.page.get_by_role("button", name="Close").click()
        open_settings(ada.page)
        expect(sessions).to_have_count(2)
        dialog.get_by_role("button", name="Sign out everywhere else").click()
        signed_out_with(phone, "This session was ended from another of your devices: log in again.")
        expect(dialog.locator("#sessions-status")).to_have_text("Signed out 1 other session.")
        expect(sessions).to_have_count(1)
        # This device stayed signed in.
        expect(ada.page.locator("#connection")).to_have_attribute("data-state", "online")
    finally:
        close_refusing(phone)


def test_logging_out_in_one_tab_signs_out_the_others(ada: Person) -> None:
    """Tabs of one browser share a session: logging out in one ends it in every one, and the
    others say so rather than sit on a dead page."""
    tab = ada.new_page()
    tab.goto(ada.url)
    expect(tab.locator("#connection")).to_have_attribute("data-state", "online")
    ada.page.get_by_role("button", name="Log out").click()
    expect(ada.page.locator("#auth")).to_be_visible()
    expect(tab.locator("#auth")).to_be_visible()
    expect(tab.locator("#auth-error")).to_have_text("You logged out in another tab or window.")


def test_changing_the_password_signs_out_the_other_devices(
    browser: Browser,
    ada: Person,
) -> None:
    phone = other_device(browser, ada)
    try:
        form = open_settings(ada.page).locator("#password-form")
        current, new = (
            form.get_by_label("Current password"),
            form.get_by_label("New password", exact=True),
        )
        repeat = form.get_by_label("Repeat the new password")
        change = form.get_by_role("button", name="Change password")
        # Two different new passwords: said before anything is sent.
        current.fill(PASSWORD)
        new.fill(NEW_PASSWORD)
        repeat.fill(NEW_PASSWORD + "!")
        change.click()
        expect(form.get_by_role("alert")).to_have_text(
            "The new passwords differ: type the same one twice."
        )
        expect(repeat).to_be_focused()
        # A wrong current password: the server's words, the field marked and focused.
        current.fill("not my password")
        repeat.fill(NEW_PASSWORD)
        change.click()
        expect(form.get_by_role("alert")).to_have_text(
            "Current password: is not your current password"
        )
        expect(current).to_have_attribute("aria-invalid", "true")
        expect(current).to_be_focused()
        current.fill(PASSWORD)
        repeat.press("Enter")
        expect(form.get_by_role("status")).to_contain_text("Password changed.")
        expect(current).to_have_value("")
        expect(current).not_to_have_attribute("aria-invalid", "true")

        signed_out_with(
            phone, "Your password was changed on another device: log in with the new one."
        )
        log_in(phone.page, ada.username, PASSWORD)
        expect(phone.page.locator("#auth-error")).to_have_text("Wrong username or password")
        log_in(phone.page, ada.username, NEW_PASSWORD)
        expect(phone.page.locator("#connection")).to_have_attribute("data-state", "online")
        # The device that changed it stays signed in.
        expect(ada.page.locator("#connection")).to_have_attribute("data-state", "online")
    finally:
        close_refusing(phone)


def test_privacy_settings_are_saved(browser: Browser, server: WebServer, ada: Person) -> None:
    form = open_settings(ada.page).locator("#privacy-form")
    online = form.get_by_role("group", name="Who sees when I am online")
    direct = form.get_by_role("group", name="Who may start a direct chat with me")
    groups = form.get_by_role("group", name="Who may add me to groups")
    # The defaults: everyone reachable (§11.7).
    expect(
        online.get_by_label("My contacts and everyone I share a conversation with")
    ).to_be_checked()
    expect(direct.get_by_label("Anyone")).to_be_checked()
    expect(groups.get_by_label("Anyone")).to_be_checked()
    online.get_by_label("Nobody").check()
    direct.get_by_label("Only my contacts").check()
    groups.get_by_label("Only my contacts").check()
    form.get_by_role("button", name="Save privacy settings").click()
    expect(form.get_by_role("status")).to_have_text("Privacy settings saved.")
    screenshot(ada.page, "settings-privacy")

    token = ada.page.evaluate("trustmess.session.access_token")
    me = api(server, "GET", "/users/me", token)
    assert (me["presence_visibility"], me["direct_policy"], me["group_policy"]) == (
        "nobody",
        "contacts",
        "contacts",
    )
    # Read back when the dialog opens again.
    ada.page.get_by_role("button", name="Close").click()
    open_settings(ada.page)
    expect(online.get_by_label("Nobody")).to_be_checked()
    expect(direct.get_by_label("Only my contacts")).to_be_checked()
    expect(groups.get_by_label("Only my contacts")).to_be_checked()

    # In force: a stranger cannot open a direct chat with her.
    grace = Person(browser, server.url, "Grace")
    try:
        grace.signup()
        grace.page.get_by_role("tab", name="People").click()
        grace.page.get_by_label("Find people").fill(ada.username)
        grace.page.get_by_role("button", name=f"Chat with Ada @{ada.username}").click()
        expect(grace.page.locator("#search-error")).to_have_text(
            "This user does not accept direct conversations from you"
        )
    finally:
        close_refusing(grace)


def test_an_email_address_is_set_and_verified_by_its_mailed_link(
    server: WebServer, mail: MailInThread, ada: Person
) -> None:
    address = f"{ada.username}@example.org"
    dialog = open_settings(ada.page)
    form = dialog.locator("#email-form")
    expect(dialog.locator("#email-state")).to_contain_text("No address yet")
    expect(dialog.get_by_role("button", name="Send the verification link again")).to_be_hidden()
    save = form.get_by_role("button", name="Save address")
    # An address the server refuses (no dot in the domain), then a wrong password: each said
    # next to the form, the field marked.
    form.get_by_label("Email address").fill(f"{ada.username}@localhost")
    form.get_by_label("Current password").fill(PASSWORD)
    save.click()
    error = dialog.locator("#email-error")
    expect(error).to_contain_text("Email: ")
    expect(form.get_by_label("Email address")).to_have_attribute("aria-invalid", "true")
    form.get_by_label("Email address").fill(address)
    form.get_by_label("Current password").fill("not my password")
    save.click()
    expect(error).to_have_text("Current password: is not your current password")
    form.get_by_label("Current password").fill(PASSWORD)
    save.click()
    expect(dialog.locator("#email-status")).to_have_text(
        f"A verification link is on its way to {address}: open it to verify the address."
    )
    expect(error).to_have_text("")
    expect(dialog.locator("#email-state")).to_have_text(f"{address} not verified")
    [first] = mail.wait_for(1, to=address)

    # Another link, on request.
    dialog.get_by_role("button", name="Send the verification link again").click()
    expect(dialog.locator("#email-status")).to_contain_text("A new verification link is on its way")
    _, second = mail.wait_for(2, to=address)
    url, token = second.link()
    assert url == f"{server.url}/verify-email"
    assert token != first.link()[1]

    ada.page.goto(f"{url}#token={token}")
    expect(ada.page.locator("#app-notice")).to_have_text("Your email address is verified.")
    dialog = open_settings(ada.page)
    expect(dialog.locator("#email-state")).to_have_text(f"{address} verified")
    expect(dialog.get_by_role("button", name="Send the verification link again")).to_be_hidden()


def test_deleting_the_account(server: WebServer, ada: Person) -> None:
    dialog = open_settings(ada.page)
    form = dialog.locator("#delete-form")
    expect(form).to_be_hidden()
    start = dialog.get_by_role("button", name="Delete my account…")
    start.click()
    # The irreversible step is spelled out, and asks for the password and a confirmation.
    expect(form.locator("#delete-warning")).to_contain_text("This cannot be undone.")
    expect(form.get_by_label("Password")).to_be_focused()
    expect(start).to_have_attribute("aria-expanded", "true")
    screenshot(ada.page, "settings-delete")
    form.get_by_role("button", name="Keep my account").click()
    expect(form).to_be_hidden()
    start.click()
    delete = form.get_by_role("button", name="Delete my account for good")
    form.get_by_label("Password").fill(PASSWORD)
    delete.click()  # the box is not ticked: the browser keeps the form
    expect(form.get_by_label("I understand that my account cannot be restored")).to_be_focused()
    form.get_by_label("I understand that my account cannot be restored").check()
    form.get_by_label("Password").fill("not my password")
    delete.click()
    expect(form.get_by_role("alert")).to_have_text("Password: is not your password")
    form.get_by_label("Password").fill(PASSWORD)

    page = ada.page
    token = page.evaluate("trustmess.session.access_token")
    delete.click()
    expect(page.locator("#auth")).to_be_visible()
    expect(page.locator("#auth-notice")).to_have_text(
        "Your account is deleted. Thank you for having used TrustMess."
    )
    expect(page.locator("#auth-error")).to_have_text("")
    assert page.evaluate("localStorage.getItem('trustmess:session')") is None
    log_in(page, ada.username, PASSWORD)
    expect(page.locator("#auth-error")).to_have_text("Wrong username or password")
    # Its access token, not expired yet, is refused at once.
    with pytest.raises(urllib.error.HTTPError) as refused:
        api(server, "GET", "/users/me", token)
    refused.value.close()
    assert refused.value.code == 401
