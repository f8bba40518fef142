"""The operator sign-in: guessing is locked out (in every web process), its forms carry a CSRF
token, signing out ends the session for every copy of the cookie, and a session lasts at most 12 h."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app import create_app
from app.web.context import services_of
from tests.conftest import API_TOKEN
from tests.forms import hidden, sign_in_operator


def login_form(client) -> dict[str, str]:
    return {"csrf_token": hidden(client.get("/admin/login").text, "csrf_token")}


def guess(client, form, secret="wrong guess", address="203.0.113.7"):
    return client.post("/admin/login", data={**form, "secret": secret}, environ_base={"REMOTE_ADDR": address})


def signed_in(client) -> bool:
    rv = client.get("/admin")
    assert rv.status_code in (200, 302), rv.status_code
    return rv.status_code == 200


def move_clock(app, by: timedelta) -> None:
    clock = services_of(app).clock
    services_of(app).clock = lambda: clock() + by


def test_300_guesses_lock_the_guesser_out_after_five(client):
    form = login_form(client)
    answers = [guess(client, form) for _ in range(300)]
    assert [rv.status_code for rv in answers[:4]] == [401] * 4
    assert {rv.status_code for rv in answers[4:]} == {429}
    locked = answers[-1]
    assert 0 < int(locked.headers["Retry-After"]) <= 900
    assert "Too many failed sign-ins" in locked.text and "try again in 15 minutes" in locked.text
    # Locked means locked: the right secret no longer gets in either, from that address.
    assert guess(client, form, secret=API_TOKEN).status_code == 429
    assert not signed_in(client)


def test_the_lockout_holds_in_every_web_process(app_config, client):
    other_process = create_app(app_config).test_client()  # a second web process on the same database
    form, other_form = login_form(client), login_form(other_process)
    for _ in range(5):
        guess(client, form)
    assert guess(other_process, other_form, secret=API_TOKEN).status_code == 429


def test_guesses_spread_over_many_addresses_lock_everyone_out(client):
    form = login_form(client)
    answers = [guess(client, form, address=f"198.51.100.{n}").status_code for n in range(1, 51)]
    assert answers[:49] == [401] * 49 and answers[49] == 429
    assert guess(client, form, secret=API_TOKEN, address="192.0.2.1").status_code == 429


def test_a_lockout_ends_with_its_window_and_a_success_forgets_earlier_failures(app, client):
    form = login_form(client)
    for _ in range(5):
        guess(client, form)
    move_clock(app, timedelta(minutes=15, seconds=1))
    for _ in range(4):
        assert guess(client, form).status_code == 401
    assert guess(client, form, secret=API_TOKEN).status_code == 302
    client.post("/admin/logout", data=login_form(client))
    assert [guess(client, login_form(client)).status_code for _ in range(4)] == [401] * 4


@pytest.mark.parametrize("token", [None, "", "a-token-from-another-session"])
def test_a_sign_in_without_the_sessions_csrf_token_is_refused(client, token):
    login_form(client)  # the session has a token; the post does not carry it
    data = {"secret": API_TOKEN} if token is None else {"secret": API_TOKEN, "csrf_token": token}
    rv = client.post("/admin/login", data=data)
    assert rv.status_code == 400 and "expired" in rv.text
    assert not signed_in(client)


def test_a_sign_out_without_the_csrf_token_is_refused(client):
    assert sign_in_operator(client).status_code == 302
    assert client.post("/admin/logout").status_code == 400
    assert signed_in(client)


def test_a_copied_cookie_stops_working_at_sign_out(app, client):
    sign_in_operator(client)
    copied = client.get_cookie("session").value
    attacker = app.test_client()
    attacker.set_cookie("session", copied)
    assert signed_in(attacker)

    page = client.get("/admin").text
    assert client.post("/admin/logout", data={"csrf_token": hidden(page, "csrf_token")}).status_code == 302
    assert not signed_in(client)
    assert not signed_in(attacker)


def test_an_operator_session_lasts_at_most_12_hours(app, client):
    sign_in_operator(client)
    assert app.permanent_session_lifetime <= timedelta(hours=12)
    move_clock(app, timedelta(hours=11, minutes=59))
    assert signed_in(client)
    move_clock(app, timedelta(minutes=2))
    assert not signed_in(client)
