"""Failed sign-ins and refreshes are throttled per email and per client address (a sliding window in
Redis): 429 with Retry-After, decided before the password is hashed."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from tests.conftest import wait_redis
from webapp.security import passwords, throttle

LOGIN = "/api/v1/auth/login"


@pytest.fixture
def limits(base_app, monkeypatch, services):
    app = base_app  # the same object as the `app` fixture's, which tests that need one take
    monkeypatch.setitem(app.config, "AUTH_THROTTLE_WINDOW_SECONDS", 300)
    monkeypatch.setitem(app.config, "AUTH_MAX_FAILURES_PER_EMAIL", 5)
    monkeypatch.setitem(app.config, "AUTH_MAX_FAILURES_PER_ADDRESS", 12)
    client = redis.Redis.from_url(services.redis_url)
    for key in client.keys(throttle.PREFIX + "*"):
        client.delete(key)
    yield client
    for key in client.keys(throttle.PREFIX + "*"):
        client.delete(key)


@pytest.fixture
def hashes(monkeypatch):
    """Counts the password hashes computed."""
    calls = []
    real = passwords.check_password_hash

    def counting(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(passwords, "check_password_hash", counting)
    return calls


def _login(client, email, password, address="10.0.0.1"):
    return client.post(
        LOGIN, json={"email": email, "password": password}, environ_base={"REMOTE_ADDR": address}
    )


def _refresh(client, token: str, address: str):
    return client.post(
        "/api/v1/auth/refresh",
        headers={"Authorization": f"Bearer {token}"},
        environ_base={"REMOTE_ADDR": address},
    )


def _logged_out_refresh_token(client, user, address: str) -> str:
    """The refresh token of a login of `user` from `address`, used up by that login's logout."""
    tokens = _login(client, user["email"], user["password"], address).get_json()
    logout = client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert logout.status_code == 200
    return tokens["refresh_token"]


def test_thirty_wrong_passwords_are_five_401s_then_429s_that_hash_nothing(client, tenant, limits, hashes):
    email = tenant.users["viewer"]["email"]
    answers = [_login(client, email, f"wrong-{i}") for i in range(30)]
    assert [r.status_code for r in answers] == [401] * 5 + [429] * 25
    assert len(hashes) == 5
    refused = answers[-1]
    assert refused.get_json()["error"]["code"] == "too_many_failures"
    assert 1 <= int(refused.headers["Retry-After"]) <= 301
    # The right password too waits: a guesser cannot tell it found it.
    assert _login(client, email, tenant.users["viewer"]["password"]).status_code == 429
    assert len(hashes) == 5
    # Another user from another address signs in.
    other = tenant.users["agent"]
    assert _login(client, other["email"], other["password"], "10.0.0.2").status_code == 200


def test_wrong_passwords_sent_at_once_get_no_more_guesses(live_app, make_live_tenant, limits, hashes):
    """Attempts sent together are counted as they are admitted, not after their hash: twelve at once
    are five 401s and seven 429s, five hashes (found from outside: all twelve were checked)."""
    email = make_live_tenant("Guessed").users["viewer"]["email"]
    start = threading.Barrier(12)

    def attempt(i: int) -> int:
        client = live_app.test_client()
        start.wait()
        return _login(client, email, f"wrong-{i}").status_code

    with ThreadPoolExecutor(12) as pool:
        codes = sorted(pool.map(attempt, range(12)))
    assert codes == [401] * 5 + [429] * 7
    assert len(hashes) == 5


def test_right_passwords_sent_at_once_all_sign_in(live_app, make_live_tenant, limits):
    """Sign-ins in flight fill the budget while their hashes run: the others wait for them rather
    than being refused, and twelve right passwords at once all sign in."""
    user = make_live_tenant("Busy").users["viewer"]
    start = threading.Barrier(12)

    def attempt(_: int) -> int:
        client = live_app.test_client()
        start.wait()
        return _login(client, user["email"], user["password"]).status_code

    with ThreadPoolExecutor(12) as pool:
        assert list(pool.map(attempt, range(12))) == [200] * 12


def test_right_passwords_count_against_nothing(client, tenant, limits):
    """An attempt is a failure until its password proves right: sign-ins past the address's limit of
    failures all succeed, and leave no mark."""
    user = tenant.users["viewer"]
    codes = [_login(client, user["email"], user["password"], "10.3.3.3").status_code for _ in range(15)]
    assert codes == [200] * 15
    for key in (throttle.address_key("10.3.3.3"), throttle.email_key(user["email"])):
        assert limits.zcard(key) == limits.zcard(key + ":pending") == 0


def test_the_window_slides(client, tenant, limits):
    """Failures older than the window no longer count; Retry-After says when the oldest counted ends."""
    user = tenant.users["viewer"]
    key = throttle.email_key(user["email"])
    now = time.time()
    limits.zadd(key, {f"old-{i}": now - 301 - i for i in range(5)})
    assert _login(client, user["email"], user["password"]).status_code == 200  # all five slid out
    limits.zadd(key, {f"recent-{i}": now - 100 + i for i in range(5)})
    refused = _login(client, user["email"], user["password"])
    assert refused.status_code == 429
    # The oldest counted failure (100 s ago) leaves the 300 s window in about 200 s.
    assert 195 <= int(refused.headers["Retry-After"]) <= 202


def test_a_right_password_clears_the_emails_failures(client, tenant, limits):
    user = tenant.users["viewer"]
    for _ in range(4):
        assert _login(client, user["email"], "nope").status_code == 401
    assert _login(client, user["email"], user["password"]).status_code == 200
    assert [_login(client, user["email"], "nope").status_code for _ in range(5)] == [401] * 5


def test_one_address_guessing_many_emails_is_throttled(client, tenant, limits, hashes):
    codes = [_login(client, f"user{i}@nowhere.test", "guess", "10.9.9.9").status_code for i in range(20)]
    assert codes == [401] * 12 + [429] * 8
    assert len(hashes) == 12
    # Other addresses are not.
    assert _login(client, "someone@nowhere.test", "guess", "10.9.9.10").status_code == 401


def test_the_browser_sign_in_shares_the_throttle(client, tenant, limits, hashes):
    email = tenant.users["viewer"]["email"]
    for i in range(5):
        assert _login(client, email, f"wrong-{i}").status_code == 401
    response = client.post(
        "/web/session",
        json={"email": email, "password": "again"},
        headers={"X-Requested-With": "dashboard"},
        environ_base={"REMOTE_ADDR": "10.0.0.7"},
    )
    assert response.status_code == 429
    assert len(hashes) == 5


def test_failed_refreshes_throttle_their_address(client, tenant, limits):
    codes = [_refresh(client, "not-a-token", "10.1.1.1").status_code for _ in range(14)]
    assert codes == [401] * 12 + [429] * 2
    refused = _refresh(client, "not-a-token", "10.1.1.1")
    assert refused.get_json()["error"]["message"].startswith("too many failed token refreshes")
    # A refresh token whose signature holds spends its login's budget alone: a live session behind
    # that address goes on refreshing, from there and from anywhere else.
    login = _login(client, tenant.users["viewer"]["email"], tenant.users["viewer"]["password"], "10.1.1.2")
    refreshed = _refresh(client, login.get_json()["refresh_token"], "10.1.1.1")
    assert refreshed.status_code == 200, refreshed.get_json()
    assert _refresh(client, refreshed.get_json()["refresh_token"], "10.1.1.2").status_code == 200


def test_failed_sign_ins_from_an_address_stop_no_live_session_refreshing_there(client, tenant, limits):
    """Guesses at unknown emails fill the address's budget (sign-ins of new emails there are 429); a
    session signed in from that address still refreshes."""
    user = tenant.users["viewer"]
    tokens = _login(client, user["email"], user["password"], "10.5.0.1").get_json()
    codes = [_login(client, f"nobody{i}@nowhere.test", "guess", "10.5.0.1").status_code for i in range(14)]
    assert codes == [401] * 12 + [429] * 2
    refreshed = _refresh(client, tokens["refresh_token"], "10.5.0.1")
    assert refreshed.status_code == 200, refreshed.get_json()


def test_failed_refreshes_of_one_login_throttle_it_from_any_address(client, tenant, limits):
    """A refresh token used up (here by a logout) sent again from ever new addresses: its login's
    failed refreshes are counted, so the sixth is 429, in a budget apart from the email's sign-ins
    (which stay open) and from the user's other logins (which go on refreshing)."""
    user = tenant.users["viewer"]
    other_login = _login(client, user["email"], user["password"], "10.2.0.2").get_json()
    used = _logged_out_refresh_token(client, user, "10.2.0.1")
    codes = [_refresh(client, used, f"10.2.1.{n}").status_code for n in range(1, 9)]
    assert codes == [401] * 5 + [429] * 3
    assert _login(client, user["email"], user["password"], "10.2.2.1").status_code == 200
    live = _refresh(client, other_login["refresh_token"], "10.2.0.2")
    assert live.status_code == 200, live.get_json()
    # Another user's email is untouched; a forged token names no email (its address alone counts).
    other = tenant.users["agent"]
    assert _login(client, other["email"], other["password"], "10.2.2.2").status_code == 200


def test_someone_guessing_a_password_does_not_stop_its_sessions_refreshing(client, tenant, limits):
    user = tenant.users["agent"]
    tokens = _login(client, user["email"], user["password"], "10.4.0.1").get_json()
    codes = [_login(client, user["email"], "wrong", f"10.4.1.{n}").status_code for n in range(1, 8)]
    assert codes == [401] * 5 + [429] * 2
    refreshed = _refresh(client, tokens["refresh_token"], "10.4.0.1")
    assert refreshed.status_code == 200, refreshed.get_json()


def test_a_replayed_session_cookie_counts_against_its_login_whatever_other_headers_come(app, tenant, limits):
    """The dashboard's refresh reads its cookie alone: an Authorization header sent beside it must not
    hide the cookie's login from the throttle."""
    user = tenant.users["agent"]
    browser = app.test_client()
    signed_in = browser.post(
        "/web/session",
        json={"email": user["email"], "password": user["password"]},
        headers={"X-Requested-With": "dashboard"},
        environ_base={"REMOTE_ADDR": "10.3.0.1"},
    )
    assert signed_in.status_code == 200
    cookie = browser.get_cookie("dashboard_refresh", path="/web/session").value
    assert browser.post("/web/session/logout", headers={"X-Requested-With": "dashboard"}).status_code in (
        200,
        204,
    )
    codes = []
    for n in range(1, 9):
        replay = app.test_client()
        replay.set_cookie("dashboard_refresh", cookie, path="/web/session")
        codes.append(
            replay.post(
                "/web/session/refresh",
                headers={"X-Requested-With": "dashboard", "Authorization": "Bearer junk"},
                environ_base={"REMOTE_ADDR": f"10.3.1.{n}"},
            ).status_code
        )
    assert codes == [401] * 5 + [429] * 3


def test_without_redis_sign_in_still_works(client, tenant, limits, stoppable_redis, services):
    user = tenant.users["viewer"]
    stoppable_redis.stop()
    try:
        assert _login(client, user["email"], "nope").status_code == 401
        assert _login(client, user["email"], user["password"]).status_code == 200
    finally:
        stoppable_redis.start()
    wait_redis(services.redis_url)


def test_a_flood_from_an_address_does_not_lock_out_the_users_who_signed_in_there(
    client, tenant, make_tenant, limits, hashes
):
    """The address's budget stops one client guessing across emails; an email that signed in from the
    address before spends a second budget of it, which guesses at unknown emails cannot use up, so its
    user still signs in; guesses at its password stay within its email's five; and known emails
    together are held to that second budget (making emails known at most doubles an address's
    guesses)."""
    known, unknown = tenant.users["viewer"], tenant.users["agent"]
    # Users of other organizations, with emails of their choosing, signed in once each.
    others = [make_tenant(f"Known {n}").users["admin"] for n in range(2)]
    for user in (known, *others):
        assert _login(client, user["email"], user["password"], "10.7.7.7").status_code == 200
    codes = [_login(client, f"user{i}@nowhere.test", "guess", "10.7.7.7").status_code for i in range(14)]
    assert codes == [401] * 12 + [429] * 2
    assert _login(client, unknown["email"], unknown["password"], "10.7.7.7").status_code == 429
    assert _login(client, known["email"], known["password"], "10.7.7.7").status_code == 200
    before = len(hashes)
    guesses = [_login(client, known["email"], f"wrong-{i}", "10.7.7.7").status_code for i in range(7)]
    assert guesses == [401] * 5 + [429] * 2
    assert len(hashes) == before + 5
    # Known at that address only: elsewhere it is one more email of the address's budget.
    assert limits.zscore(throttle.known_key("10.7.7.8"), throttle.email_digest(known["email"])) is None
    # The known emails share the second budget: 12 failures in all, then 429 before any hash.
    spent = 5  # the first known email's failures above
    answers = [
        _login(client, o["email"], f"nope-{i}", "10.7.7.7").status_code for o in others for i in range(5)
    ]
    assert answers.count(401) == 12 - spent
    assert answers.count(429) == 10 - (12 - spent)


def test_replayed_logged_out_tokens_stop_no_other_session_nor_sign_in_at_their_address(
    client, tenant, limits
):
    """Someone with an account, signing in and out and replaying each used-up refresh token from one
    address, spends each login's budget: another user's live session there still refreshes and its
    known user still signs in."""
    mine, theirs = tenant.users["agent"], tenant.users["viewer"]
    live = _login(client, theirs["email"], theirs["password"], "10.6.0.1").get_json()
    for _ in range(4):
        used = _logged_out_refresh_token(client, mine, "10.6.0.1")
        codes = [_refresh(client, used, "10.6.0.1").status_code for _ in range(7)]
        assert codes == [401] * 5 + [429] * 2
    refreshed = _refresh(client, live["refresh_token"], "10.6.0.1")
    assert refreshed.status_code == 200, refreshed.get_json()
    assert _login(client, theirs["email"], theirs["password"], "10.6.0.1").status_code == 200
