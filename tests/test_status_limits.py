"""Rate limits of the status page, against a real server: a channel's status views (HTML and JSON)
are limited by its ``maxStatusViewsPerMinute``, and failed sign-ins (bad signatures, forged session
cookies) by client address, each past its limit with a 429 that says why and when to retry."""

from __future__ import annotations

import pytest
import requests
from server_process import RO_PASSWORD, RW_PASSWORD, ServerProcess, signed_request
from status_data import status_settings

from pairio.errors import ConfigurationError
from pairio.server import sessions
from pairio.server.ratelimit import RateLimiter
from pairio.server.settings import parse_settings
from pairio.server.status_routes import FAILED_SIGNINS_PER_MINUTE
from pairio.signing import sign_request


def signed_view(server, channel: str, password: str, name: str = "overview") -> requests.Response:
    path = f"/api/v1/status/{name}"
    return requests.get(server.url + path, headers=sign_request(channel, password, "GET", path, b""), timeout=10)


def test_a_channels_status_views_are_limited_by_its_max_status_views_per_minute(tmp_path):
    settings = status_settings()
    settings["channels"][0]["maxStatusViewsPerMinute"] = 3
    with ServerProcess(tmp_path, settings) as server:
        assert [signed_view(server, "lab-rw", RW_PASSWORD).status_code for _ in range(3)] == [200] * 3
        refused = signed_view(server, "lab-rw", RW_PASSWORD, "steps")
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert "rate limit of 3 status views per minute for channel 'lab-rw' exceeded" in refused.json()["error"]
        token = signed_request(server.url, "lab-rw", RW_PASSWORD, "/api/v1/status/session", {}).cookies[sessions.COOKIE]
        page = requests.get(server.url + "/", cookies={sessions.COOKIE: token}, timeout=10)
        assert page.status_code == 429 and "3 status views per minute" in page.text and "Retry-After" in page.headers
        # Another channel has its own allowance.
        assert signed_view(server, "public-ro", RO_PASSWORD).status_code == 200
        paths = requests.get(server.url + "/openapi.json", timeout=10).json()["paths"]
        assert "maxStatusViewsPerMinute" in paths["/api/v1/status/overview"]["get"]["responses"]["429"]["description"]
        assert "inputs" in str(paths["/api/v1/set_many"])  # a record's inputs, in the document


def test_failed_sign_ins_from_one_address_are_refused_past_the_limit_even_with_the_right_password(tmp_path):
    with ServerProcess(tmp_path, status_settings()) as server:
        for _ in range(FAILED_SIGNINS_PER_MINUTE + 2):  # not signed, or a stale clock: no guess of a password
            assert requests.post(server.url + "/api/v1/status/session", json={}, timeout=10).status_code == 401
            stale = sign_request("lab-rw", RW_PASSWORD, "POST", "/api/v1/status/session", b"{}", timestamp=1)
            assert requests.post(server.url + "/api/v1/status/session", data=b"{}", headers=stale,
                                 timeout=10).status_code == 401
        for _ in range(FAILED_SIGNINS_PER_MINUTE):
            wrong = signed_request(server.url, "lab-rw", "a-wrong-guess", "/api/v1/status/session", {})
            assert wrong.status_code == 401
        refused = signed_request(server.url, "lab-rw", RW_PASSWORD, "/api/v1/status/session", {})
        assert refused.status_code == 429 and "Set-Cookie" not in refused.headers
        assert f"too many failed sign-ins from this address (at most {FAILED_SIGNINS_PER_MINUTE} a minute)" \
            in refused.json()["error"]
        assert signed_view(server, "lab-rw", RW_PASSWORD).status_code == 429  # the views too
        # The channel's other requests are not the sign-in's: a signed get still works.
        assert signed_request(server.url, "lab-rw", RW_PASSWORD, "/api/v1/get",
                              {"collection": "spikes", "key": "a" * 40}).status_code == 200


def test_forged_session_cookies_count_as_failed_sign_ins_and_expired_ones_do_not(tmp_path):
    with ServerProcess(tmp_path, status_settings()) as server:
        expired = sessions.make_token("lab-rw", RW_PASSWORD, now=0)
        for _ in range(FAILED_SIGNINS_PER_MINUTE + 2):  # an old cookie is no guess: the sign-in page
            assert requests.get(server.url + "/", cookies={sessions.COOKIE: expired}, timeout=10).status_code == 200
        forged = sessions.make_token("lab-rw", "a-guessed-password")
        for _ in range(FAILED_SIGNINS_PER_MINUTE):
            answer = requests.get(server.url + "/api/v1/status/overview", cookies={sessions.COOKIE: forged}, timeout=10)
            assert answer.status_code == 401
        answer = requests.get(server.url + "/api/v1/status/overview", cookies={sessions.COOKIE: forged}, timeout=10)
        assert answer.status_code == 429 and "too many failed sign-ins" in answer.json()["error"]


@pytest.mark.parametrize("value", [0, -1, 1.5, "10", True])
def test_a_bad_max_status_views_per_minute_is_refused_naming_it(value, tmp_path):
    settings = status_settings()
    settings["channels"][0]["maxStatusViewsPerMinute"] = value
    with pytest.raises(ConfigurationError, match=r"channels\[0\]\.maxStatusViewsPerMinute.*must be a whole number"):
        parse_settings(settings, tmp_path)


def test_the_limiters_wait_takes_no_token_and_idle_buckets_are_forgotten():
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    key = ("pairio.signin", "10.0.0.1", "failed")
    assert limiter.wait(key, 2) == 0.0
    assert limiter.acquire(key, 2) == 0.0 and limiter.acquire(key, 2) == 0.0
    assert limiter.wait(key, 2) == pytest.approx(30.0) and limiter.wait(key, 2) == pytest.approx(30.0)
    now[0] = 61.0
    limiter.forget_idle()
    assert len(limiter) == 0


def test_failed_sign_ins_are_counted_across_replicas_sharing_postgresql(tmp_path, postgres_url):
    # Two replicas of one deployment: guesses spread over both are one address's guesses.
    settings = status_settings(database=postgres_url)
    with ServerProcess(tmp_path / "a", settings) as a, ServerProcess(tmp_path / "b", settings) as b:
        half = FAILED_SIGNINS_PER_MINUTE // 2
        for server in [a] * half + [b] * (FAILED_SIGNINS_PER_MINUTE - half):
            assert signed_request(server.url, "lab-rw", "a-wrong-guess", "/api/v1/status/session", {}).status_code == 401
        for server in (a, b):
            # The shared allowance is spent: a replica learns it with its next failure, and refuses from then on.
            assert signed_request(server.url, "lab-rw", "a-wrong-guess", "/api/v1/status/session", {}).status_code \
                in (401, 429)
            refused = signed_request(server.url, "lab-rw", RW_PASSWORD, "/api/v1/status/session", {})
            assert refused.status_code == 429 and "too many failed sign-ins" in refused.json()["error"]
