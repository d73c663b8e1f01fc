"""http.py: retries, rate-limit headers, error translation, audit log and secret hygiene."""

from __future__ import annotations

import io
import json
import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses
from urllib3.exceptions import MaxRetryError, NewConnectionError

from tajo_braze.errors import (
    ApiError,
    AuthError,
    ConnectionFailed,
    PermanentApiError,
    PermissionDenied,
    RateLimited,
    TransientApiError,
)
from tajo_braze.http import (
    BRAZE_REST_HOSTS,
    STATUS_ERRORS,
    ApiSession,
    ExportNotReady,
    RetryPolicy,
    backoff_delay,
    error_class_for,
    full_jitter,
    host_of,
    mask_url,
    parse_rate_limit_headers,
    parse_retry_after,
)
from tajo_braze.log import make_logger
from tajo_braze.ratelimit import Bucket, RateLimiter

BRAZE = "https://rest.iad-01.braze.com"
BREVO = "https://api.brevo.com/v3"
BRAZE_KEY = "braze-rest-key-5f1e-4c2a-SECRET"
BREVO_KEY = "xkeysib-0a1b2c3d4e5f-SECRET"
NOW_EPOCH = 1_700_000_000.0
EXPORT_URL = "https://braze-exports.s3.amazonaws.com/seg/export.zip?X-Amz-Signature=sig0123456789"


class FakeClock:
    def __init__(self) -> None:
        self.now = 500.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(round(seconds, 6))
            self.now += seconds


class SpyLimiter(RateLimiter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.observed: list[tuple[str, int | None, int | None, float | None]] = []
        self.blocked: list[tuple[str, float]] = []

    def observe(
        self, name: str, *, limit: int | None, remaining: int | None, reset_in_s: float | None
    ) -> None:
        self.observed.append((name, limit, remaining, reset_in_s))
        super().observe(name, limit=limit, remaining=remaining, reset_in_s=reset_in_s)

    def block_until(self, name: str, seconds_from_now: float) -> None:
        self.blocked.append((name, round(seconds_from_now, 6)))
        super().block_until(name, seconds_from_now)


BUCKETS = [Bucket("x.minute", 100, 60.0), Bucket("x.hour", 1000, 3600.0)]


def make_session(
    api: str = "braze",
    *,
    clock: FakeClock,
    retry: RetryPolicy = RetryPolicy(max_attempts=3),  # noqa: B008
    logger: Any = None,
    log_bodies: bool = False,
    base_url: str | None = None,
) -> tuple[ApiSession, SpyLimiter]:
    limiter = SpyLimiter(BUCKETS, clock=clock, sleep=clock.sleep)
    auth = {"Authorization": f"Bearer {BRAZE_KEY}"} if api == "braze" else {"api-key": BREVO_KEY}
    session = ApiSession(
        api=api,  # type: ignore[arg-type]
        base_url=base_url or (BRAZE if api == "braze" else BREVO),
        auth_headers=auth,
        limiter=limiter,
        retry=retry,
        logger=logger,
        log_bodies=log_bodies,
        sleep=clock.sleep,
        rng=random.Random(1),
        wall_clock=lambda: NOW_EPOCH,
    )
    return session, limiter


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def log_records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def expected_backoffs(policy: RetryPolicy, count: int) -> list[float]:
    rng = random.Random(1)
    return [round(backoff_delay(policy, attempt, rng), 6) for attempt in range(1, count + 1)]


def refused() -> requests.exceptions.ConnectionError:
    reason = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] refused")  # type: ignore[arg-type]
    return requests.exceptions.ConnectionError(MaxRetryError(None, "/", reason))  # type: ignore[arg-type]


# ----------------------------------------------------------------- pure functions
class _TopRng(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return b


def test_full_jitter_stays_within_zero_and_the_delay() -> None:
    rng = random.Random(3)
    draws = [full_jitter(4.0, rng) for _ in range(500)]

    assert all(0.0 <= d <= 4.0 for d in draws)
    assert len(set(draws)) > 400
    assert full_jitter(0.0, rng) == 0.0


def test_backoff_is_exponential_and_capped() -> None:
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=5.0)

    ceilings = [backoff_delay(policy, attempt, _TopRng()) for attempt in range(1, 8)]

    assert ceilings == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_one_table_maps_statuses_to_exceptions() -> None:
    assert STATUS_ERRORS[401] is AuthError
    assert error_class_for(402) is PermissionDenied
    assert error_class_for(403) is PermissionDenied
    for status in (400, 404, 405, 409, 413, 422, 418, 302):
        assert error_class_for(status) is PermanentApiError, status
    for status in (408, 425, 500, 502, 503, 504, 520, 524):
        assert error_class_for(status) is TransientApiError, status
    assert error_class_for(429) is RateLimited
    assert error_class_for(501) is PermanentApiError


def test_rate_limit_headers_braze_epoch_case_insensitive() -> None:
    info = parse_rate_limit_headers(
        "braze",
        {
            "x-ratelimit-limit": "3000",
            "X-RATELIMIT-REMAINING": "12",
            "x-RateLimit-Reset": str(int(NOW_EPOCH) + 2),
        },
        NOW_EPOCH,
    )

    assert (info.limit, info.remaining, info.reset_in_s) == (3000, 12, 2.0)


def test_rate_limit_headers_brevo_relative_seconds() -> None:
    info = parse_rate_limit_headers(
        "brevo",
        {"X-Sib-Ratelimit-Limit": "10", "x-sib-ratelimit-remaining": "0", "x-sib-ratelimit-reset": "1"},
        NOW_EPOCH,
    )

    assert (info.limit, info.remaining, info.reset_in_s) == (10, 0, 1.0)
    assert not parse_rate_limit_headers("brevo", {"x-other": "1"}, NOW_EPOCH).present


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert parse_retry_after("7", NOW_EPOCH) == 7.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:40 GMT", NOW_EPOCH) == pytest.approx(20.0)
    assert parse_retry_after("soon", NOW_EPOCH) is None
    assert parse_retry_after(None, NOW_EPOCH) is None


@pytest.mark.parametrize(
    "url",
    ["http://rest.iad-01.braze.com", "ftp://api.brevo.com/v3", "http://10.0.0.5:8900/braze", "https://"],
)
def test_base_url_must_be_https_unless_loopback(url: str, clock: FakeClock) -> None:
    with pytest.raises(ValueError):
        make_session(clock=clock, base_url=url)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8900/braze", "http://localhost:8900/brevo/v3", "http://[::1]:9000", BRAZE]
)
def test_loopback_http_and_https_are_accepted(url: str, clock: FakeClock) -> None:
    session, _ = make_session(clock=clock, base_url=url)
    assert session.base_url == url.rstrip("/")


def test_urls_in_messages_drop_user_info_and_query() -> None:
    assert host_of("https://user:pa55word@bucket.example:8443/x?sig=1") == "bucket.example:8443"
    assert host_of("http://[::1]:9000/braze") == "[::1]:9000"
    assert mask_url("https://user:pa55word@bucket.example/seg/x.zip?X-Amz-Signature=s") == (
        "https://bucket.example/seg/x.zip"
    )


# ----------------------------------------------------------------- requests
def test_request_joins_url_sends_auth_and_orjson_body(rsps: responses.RequestsMock, clock: FakeClock) -> None:
    rsps.add(
        responses.POST,
        f"{BRAZE}/users/track",
        json={"message": "success"},
        status=201,
        headers={"X-Request-Id": "req-1"},
        match=[
            responses.matchers.json_params_matcher({"attributes": [{"external_id": "u1"}]}),
            responses.matchers.query_param_matcher({"a": "1"}),
            responses.matchers.header_matcher(
                {"Authorization": f"Bearer {BRAZE_KEY}", "Content-Type": "application/json"}
            ),
        ],
    )
    session, _ = make_session(clock=clock)

    answer = session.request(
        "post",
        "users/track",
        buckets=["x.minute"],
        params={"a": 1},
        json={"attributes": [{"external_id": "u1"}]},
    )

    assert answer.status == 201
    assert answer.data == {"message": "success"}
    assert answer.request_id == "req-1"
    assert answer.headers["x-request-id"] == "req-1"  # case-insensitive
    assert session.call_counts == {"POST users/track": 1}
    assert session.retries == 0


def test_endpoint_names_the_call_in_counts_and_logs(rsps: responses.RequestsMock, clock: FakeClock) -> None:
    rsps.add(responses.GET, f"{BREVO}/contacts/a%2Bb%40x.io", json={"id": 1})
    stream = io.StringIO()
    session, _ = make_session("brevo", clock=clock, logger=make_logger(stream=stream))

    session.request("GET", "/contacts/a%2Bb%40x.io", buckets=["x.minute"], endpoint="/contacts/{identifier}")

    assert session.call_counts == {"GET /contacts/{identifier}": 1}
    assert "x.io" not in stream.getvalue()


def test_expected_status_is_returned_not_raised(rsps: responses.RequestsMock, clock: FakeClock) -> None:
    rsps.add(responses.DELETE, f"{BREVO}/contacts/9", status=404, json={"code": "document_not_found"})
    session, _ = make_session("brevo", clock=clock)

    answer = session.request("DELETE", "/contacts/9", buckets=["x.minute"], expected=(404,))

    assert answer.status == 404
    assert answer.data == {"code": "document_not_found"}
    error = session.error_from(answer)
    assert isinstance(error, PermanentApiError)
    assert "404" in str(error)


def test_redirects_are_not_followed(rsps: responses.RequestsMock, clock: FakeClock) -> None:
    rsps.add(
        responses.GET, f"{BRAZE}/segments/list", status=302, headers={"Location": "https://evil.example/x"}
    )
    session, _ = make_session(clock=clock)

    with pytest.raises(PermanentApiError):
        session.request("GET", "/segments/list", buckets=["x.minute"])
    assert len(rsps.calls) == 1


def test_a_call_without_buckets_is_refused(clock: FakeClock) -> None:
    session, _ = make_session(clock=clock)
    with pytest.raises(ValueError, match="rate-limit bucket"):
        session.request("GET", "/x", buckets=[])


# ----------------------------------------------------------------- error translation
def test_braze_401_names_the_key_the_fix_and_the_valid_hosts(
    rsps: responses.RequestsMock, clock: FakeClock
) -> None:
    rsps.add(
        responses.POST,
        f"{BRAZE}/users/track",
        status=401,
        json={"message": "Invalid API key: " + BRAZE_KEY},
        headers={"X-Request-Id": "r-401"},
    )
    session, _ = make_session(clock=clock)

    with pytest.raises(AuthError) as caught:
        session.request("POST", "/users/track", buckets=["x.minute"], json={}, permission="users.track")

    error = caught.value
    assert error.user_message.startswith("Braze rejected the REST API key (401).")
    assert "POST /users/track" in error.user_message
    assert "r-401" in error.user_message
    assert "BRAZE_API_KEY" in error.fix
    assert "rest.iad-01.braze.com" in error.fix and "rest.fra-02.braze.eu" in error.fix
    assert all(host in error.fix for host in BRAZE_REST_HOSTS)
    assert (error.api, error.status, error.request_id, error.method, error.path) == (
        "braze",
        401,
        "r-401",
        "POST",
        "/users/track",
    )
    for text in (str(error), error.detail, error.body_excerpt, repr(error.args)):
        assert BRAZE_KEY not in text
    assert "***" in error.body_excerpt
    assert len(rsps.calls) == 1  # never retried


def test_brevo_401_names_the_key_and_authorized_ips(rsps: responses.RequestsMock, clock: FakeClock) -> None:
    rsps.add(
        responses.GET,
        f"{BREVO}/account",
        status=401,
        json={"code": "unauthorized", "message": "Key not found"},
        headers={"sib-request-id": "sib-9"},
    )
    session, _ = make_session("brevo", clock=clock)

    with pytest.raises(AuthError) as caught:
        session.request("GET", "/account", buckets=["x.minute"])

    assert caught.value.user_message.startswith("Brevo rejected the API key (401).")
    assert "BREVO_API_KEY" in caught.value.fix
    assert "xkeysib-" in caught.value.fix
    assert "Authorized IPs" in caught.value.fix
    assert caught.value.request_id == "sib-9"
    assert "Key not found" in caught.value.user_message


def test_braze_403_names_the_missing_permission(rsps: responses.RequestsMock, clock: FakeClock) -> None:
    rsps.add(responses.POST, f"{BRAZE}/users/track", status=403, json={"message": "Access Denied"})
    session, _ = make_session(clock=clock)

    with pytest.raises(PermissionDenied) as caught:
        session.request("POST", "/users/track", buckets=["x.minute"], json={}, permission="users.track")

    assert "The Braze API key lacks the permission `users.track`" in caught.value.user_message
    assert "create a new key with `users.track`" in caught.value.fix
    assert "cannot be edited" in caught.value.fix


def test_brevo_403_says_permission_denied_with_a_fix(rsps: responses.RequestsMock, clock: FakeClock) -> None:
    rsps.add(
        responses.POST,
        f"{BREVO}/events",
        status=403,
        json={"code": "permission_denied", "message": "Unauthorized access"},
    )
    session, _ = make_session("brevo", clock=clock)

    with pytest.raises(PermissionDenied) as caught:
        session.request(
            "POST", "/events", buckets=["x.minute"], json={}, permission="events", idempotent=False
        )

    assert "permission_denied" in caught.value.user_message
    assert "`events`" in caught.value.user_message
    assert "SMTP & API" in caught.value.fix


@pytest.mark.parametrize(
    ("status", "cls", "words"),
    [
        (400, PermanentApiError, "rejected POST /x as invalid"),
        (404, PermanentApiError, "404 Not Found"),
        (409, PermanentApiError, "HTTP 409"),
        (413, PermanentApiError, "too large (413)"),
        (422, PermanentApiError, "HTTP 422"),
    ],
)
def test_permanent_errors_are_not_retried(
    status: int, cls: type[ApiError], words: str, rsps: responses.RequestsMock, clock: FakeClock
) -> None:
    rsps.add(responses.POST, f"{BRAZE}/x", status=status, json={"message": "nope"})
    session, _ = make_session(clock=clock)

    with pytest.raises(cls) as caught:
        session.request("POST", "/x", buckets=["x.minute"], json={})

    assert type(caught.value) is cls
    assert words in caught.value.user_message
    assert caught.value.fix
    assert len(rsps.calls) == 1
    assert clock.sleeps == []


def test_body_excerpt_is_short_and_masked(rsps: responses.RequestsMock, clock: FakeClock) -> None:
    rsps.add(responses.POST, f"{BREVO}/x", status=400, body=f"echo api-key: {BREVO_KEY} " + "z" * 1000)
    session, _ = make_session("brevo", clock=clock)

    with pytest.raises(PermanentApiError) as caught:
        session.request("POST", "/x", buckets=["x.minute"], json={})

    assert len(caught.value.body_excerpt) <= 300
    assert BREVO_KEY not in str(caught.value)
    assert "echo api-key: ***" in caught.value.body_excerpt


# ----------------------------------------------------------------- rate limits and retries
def test_every_response_feeds_the_limiter_from_its_headers(
    rsps: responses.RequestsMock, clock: FakeClock
) -> None:
    rsps.add(
        responses.GET,
        f"{BRAZE}/a",
        json={},
        headers={
            "x-ratelimit-limit": "1000",
            "x-ratelimit-remaining": "7",
            "x-ratelimit-reset": str(int(NOW_EPOCH) + 30),
        },
    )
    rsps.add(
        responses.GET,
        f"{BRAZE}/b",
        json={},
        headers={"X-RateLimit-Limit": "55", "X-RateLimit-Remaining": "3"},
    )
    session, limiter = make_session(clock=clock)

    session.request("GET", "/a", buckets=["x.minute", "x.hour"])
    session.request("GET", "/b", buckets=["x.minute", "x.hour"])

    # The header's limit names the bucket it describes; otherwise the first bucket.
    assert limiter.observed == [("x.hour", 1000, 7, 30.0), ("x.minute", 55, 3, None)]
    assert limiter.snapshot()["x.minute"]["limit"] == 55


def test_braze_429_waits_until_the_epoch_reset_then_retries(
    rsps: responses.RequestsMock, clock: FakeClock
) -> None:
    rsps.add(
        responses.POST,
        f"{BRAZE}/users/track",
        status=429,
        json={"message": "rate limited"},
        headers={
            "x-ratelimit-limit": "100",
            "x-ratelimit-remaining": "0",
            "x-ratelimit-reset": str(int(NOW_EPOCH) + 7),
        },
    )
    rsps.add(responses.POST, f"{BRAZE}/users/track", status=201, json={"message": "success"})
    session, limiter = make_session(clock=clock)

    answer = session.request("POST", "/users/track", buckets=["x.minute"], json={}, idempotent=False)

    assert answer.status == 201
    assert clock.sleeps == [7.05]  # exactly the reset + 0.05, no jitter
    assert limiter.blocked == [("x.minute", 7.05)]
    assert (session.throttled_429, session.retries) == (1, 1)
    assert session.call_counts == {"POST /users/track": 2}


def test_brevo_429_waits_the_relative_reset(rsps: responses.RequestsMock, clock: FakeClock) -> None:
    rsps.add(
        responses.GET,
        f"{BREVO}/contacts",
        status=429,
        json={"message": "Too many requests"},
        headers={
            "X-Sib-RateLimit-Limit": "1000",
            "X-Sib-RateLimit-Remaining": "0",
            "X-Sib-RateLimit-Reset": "3",
        },
    )
    rsps.add(responses.GET, f"{BREVO}/contacts", json={"contacts": []})
    session, limiter = make_session("brevo", clock=clock)

    session.request("GET", "/contacts", buckets=["x.minute", "x.hour"])

    assert clock.sleeps == [3.05]
    assert limiter.blocked == [("x.hour", 3.05)]


def test_429_without_reset_backs_off(rsps: responses.RequestsMock, clock: FakeClock) -> None:
    policy = RetryPolicy(max_attempts=3)
    for _ in range(2):
        rsps.add(responses.GET, f"{BRAZE}/a", status=429, json={})
    rsps.add(responses.GET, f"{BRAZE}/a", json={})
    session, _ = make_session(clock=clock, retry=policy)

    session.request("GET", "/a", buckets=["x.minute"])

    assert clock.sleeps == expected_backoffs(policy, 2)


def test_a_429_with_requests_remaining_backs_off_without_holding_the_bucket(
    rsps: responses.RequestsMock, clock: FakeClock
) -> None:
    # Braze: a second export of a segment whose first export is still being built (a run that
    # was killed after asking). The hourly bucket is far from spent: its reset is no answer.
    policy = RetryPolicy(max_attempts=3)
    busy = {
        "x-ratelimit-limit": "250000",
        "x-ratelimit-remaining": "249990",
        "x-ratelimit-reset": str(int(NOW_EPOCH) + 2400),
    }
    for _ in range(2):
        rsps.add(
            responses.POST,
            f"{BRAZE}/users/export/segment",
            status=429,
            json={"message": "An export of this segment is already in progress"},
            headers=busy,
        )
    rsps.add(responses.POST, f"{BRAZE}/users/export/segment", status=201, json={"url": "u"})
    session, limiter = make_session(clock=clock, retry=policy)

    answer = session.request("POST", "/users/export/segment", buckets=["x.hour"], json={})

    assert answer.status == 201
    assert clock.sleeps == expected_backoffs(policy, 2)  # not 2,400 s
    assert limiter.blocked == []
    assert session.throttled_429 == 2


def test_429_exhausting_attempts_raises_rate_limited_with_retry_after(
    rsps: responses.RequestsMock, clock: FakeClock
) -> None:
    rsps.add(
        responses.GET,
        f"{BRAZE}/a",
        status=429,
        json={},
        headers={"X-RateLimit-Reset": str(int(NOW_EPOCH) + 4)},
    )
    session, _ = make_session(clock=clock, retry=RetryPolicy(max_attempts=3))

    with pytest.raises(RateLimited) as caught:
        session.request("GET", "/a", buckets=["x.minute"])

    assert len(rsps.calls) == 3
    assert clock.sleeps == [4.05, 4.05]
    assert caught.value.retry_after == pytest.approx(4.05)
    assert "retry in about 4 s" in caught.value.user_message
    assert "Rerun" in caught.value.fix
    assert session.throttled_429 == 3


def test_429_whose_wait_exceeds_the_budget_is_raised_at_once(
    rsps: responses.RequestsMock, clock: FakeClock
) -> None:
    rsps.add(
        responses.GET, f"{BREVO}/account", status=429, json={}, headers={"x-sib-ratelimit-reset": "2400"}
    )
    session, limiter = make_session("brevo", clock=clock, retry=RetryPolicy(max_total_wait_s=60.0))

    with pytest.raises(RateLimited) as caught:
        session.request("GET", "/account", buckets=["x.hour"])

    assert caught.value.retry_after == pytest.approx(2400.05)
    assert clock.sleeps == []
    assert limiter.blocked == [("x.hour", 2400.05)]  # later calls hold back too


def test_a_later_call_on_a_blocked_bucket_fails_fast_instead_of_hanging(
    rsps: responses.RequestsMock, clock: FakeClock
) -> None:
    rsps.add(
        responses.GET, f"{BREVO}/account", status=429, json={}, headers={"x-sib-ratelimit-reset": "2400"}
    )
    session, _ = make_session("brevo", clock=clock, retry=RetryPolicy(max_total_wait_s=60.0))
    with pytest.raises(RateLimited):
        session.request("GET", "/account", buckets=["x.hour"])

    with pytest.raises(RateLimited) as caught:
        session.request("GET", "/webhooks", buckets=["x.hour"])  # never sent: no mock is registered

    assert caught.value.retry_after == pytest.approx(2400.05)
    assert "was not sent" in caught.value.user_message
    assert clock.sleeps == []
    assert len(rsps.calls) == 1


def test_a_429_wait_is_shared_with_other_calls_on_the_bucket(
    rsps: responses.RequestsMock, clock: FakeClock
) -> None:
    rsps.add(
        responses.GET,
        f"{BRAZE}/a",
        status=429,
        json={},
        headers={"X-RateLimit-Reset": str(int(NOW_EPOCH) + 30)},
    )
    session, limiter = make_session(clock=clock, retry=RetryPolicy(max_attempts=1))
    with pytest.raises(RateLimited):
        session.request("GET", "/a", buckets=["x.minute"])

    assert limiter.wait_estimate(["x.minute"]) == pytest.approx(30.05)
    assert limiter.wait_estimate(["x.hour"]) == 0.0


def test_5xx_is_retried_with_backoff_up_to_max_attempts(
    rsps: responses.RequestsMock, clock: FakeClock
) -> None:
    policy = RetryPolicy(max_attempts=4, base_delay_s=1.0)
    for status in (500, 502, 503, 524):
        rsps.add(responses.GET, f"{BRAZE}/a", status=status, json={"message": "oops"})
    session, _ = make_session(clock=clock, retry=policy)

    with pytest.raises(TransientApiError) as caught:
        session.request("GET", "/a", buckets=["x.minute"])

    assert len(rsps.calls) == 4
    assert clock.sleeps == expected_backoffs(policy, 3)
    assert session.retries == 3
    assert "after 4 attempts" in caught.value.user_message
    assert caught.value.status == 524


def test_503_retry_after_is_honoured(rsps: responses.RequestsMock, clock: FakeClock) -> None:
    rsps.add(responses.GET, f"{BRAZE}/a", status=503, headers={"Retry-After": "9"})
    rsps.add(responses.GET, f"{BRAZE}/a", json={})
    session, _ = make_session(clock=clock)

    session.request("GET", "/a", buckets=["x.minute"])

    assert clock.sleeps == [9.05]


def test_retries_stop_at_the_total_wait_budget(rsps: responses.RequestsMock, clock: FakeClock) -> None:
    rsps.add(responses.GET, f"{BRAZE}/a", status=503, headers={"Retry-After": "40"})
    session, _ = make_session(clock=clock, retry=RetryPolicy(max_attempts=10, max_total_wait_s=100.0))

    with pytest.raises(TransientApiError):
        session.request("GET", "/a", buckets=["x.minute"])

    assert clock.sleeps == [40.05, 40.05]
    assert len(rsps.calls) == 3


def test_non_idempotent_call_is_not_retried_on_5xx(rsps: responses.RequestsMock, clock: FakeClock) -> None:
    rsps.add(responses.POST, f"{BREVO}/events/batch", status=502, body="bad gateway")
    session, _ = make_session("brevo", clock=clock)

    with pytest.raises(TransientApiError) as caught:
        session.request("POST", "/events/batch", buckets=["x.minute"], json={"events": []}, idempotent=False)

    assert len(rsps.calls) == 1
    assert clock.sleeps == []
    assert "maybe_applied=true" in caught.value.detail
    assert "may or may not have been applied" in caught.value.user_message


def test_non_idempotent_call_is_not_retried_after_a_read_timeout(
    rsps: responses.RequestsMock, clock: FakeClock
) -> None:
    rsps.add(responses.POST, f"{BRAZE}/users/track", body=requests.exceptions.ReadTimeout("read timed out"))
    session, _ = make_session(clock=clock)

    with pytest.raises(TransientApiError) as caught:
        session.request("POST", "/users/track", buckets=["x.minute"], json={}, idempotent=False)

    assert type(caught.value) is TransientApiError
    assert "maybe_applied=true" in caught.value.detail
    assert len(rsps.calls) == 1


def test_non_idempotent_call_is_retried_when_nothing_was_sent(
    rsps: responses.RequestsMock, clock: FakeClock
) -> None:
    rsps.add(
        responses.POST, f"{BRAZE}/users/track", body=requests.exceptions.ConnectTimeout("connect timed out")
    )
    rsps.add(responses.POST, f"{BRAZE}/users/track", body=refused())
    rsps.add(responses.POST, f"{BRAZE}/users/track", status=201, json={"message": "success"})
    session, _ = make_session(clock=clock)

    answer = session.request("POST", "/users/track", buckets=["x.minute"], json={}, idempotent=False)

    assert answer.status == 201
    assert len(clock.sleeps) == 2


def test_idempotent_call_is_retried_after_a_read_timeout(
    rsps: responses.RequestsMock, clock: FakeClock
) -> None:
    rsps.add(responses.GET, f"{BRAZE}/a", body=requests.exceptions.ReadTimeout("read timed out"))
    rsps.add(responses.GET, f"{BRAZE}/a", json={"ok": True})
    session, _ = make_session(clock=clock)

    assert session.request("GET", "/a", buckets=["x.minute"]).data == {"ok": True}
    assert session.retries == 1


def test_a_host_never_reached_raises_connection_failed(
    rsps: responses.RequestsMock, clock: FakeClock
) -> None:
    rsps.add(responses.GET, f"{BRAZE}/a", body=refused())
    session, _ = make_session(clock=clock, retry=RetryPolicy(max_attempts=3))

    with pytest.raises(ConnectionFailed) as caught:
        session.request("GET", "/a", buckets=["x.minute"])

    assert len(rsps.calls) == 3
    assert "Could not connect to Braze at rest.iad-01.braze.com" in caught.value.user_message
    assert "`instance_url`" in caught.value.fix


def test_tls_failure_is_not_retried(rsps: responses.RequestsMock, clock: FakeClock) -> None:
    rsps.add(
        responses.GET, f"{BREVO}/account", body=requests.exceptions.SSLError("certificate verify failed")
    )
    session, _ = make_session("brevo", clock=clock)

    with pytest.raises(ConnectionFailed) as caught:
        session.request("GET", "/account", buckets=["x.hour"])

    assert "TLS" in caught.value.user_message
    assert "`brevo.base_url`" in caught.value.fix
    assert len(rsps.calls) == 1


def test_a_dropped_connection_after_reaching_the_host_is_transient(
    rsps: responses.RequestsMock, clock: FakeClock
) -> None:
    rsps.add(responses.GET, f"{BRAZE}/a", status=500)
    rsps.add(responses.GET, f"{BRAZE}/a", body=refused())
    session, _ = make_session(clock=clock, retry=RetryPolicy(max_attempts=2))

    with pytest.raises(TransientApiError) as caught:
        session.request("GET", "/a", buckets=["x.minute"])

    assert not isinstance(caught.value, ConnectionFailed)


# ----------------------------------------------------------------- audit log
def test_every_attempt_is_one_audit_line_without_bodies_by_default(
    rsps: responses.RequestsMock, clock: FakeClock
) -> None:
    rsps.add(responses.POST, f"{BRAZE}/users/track", status=503, json={"message": f"bad {BRAZE_KEY}"})
    rsps.add(
        responses.POST,
        f"{BRAZE}/users/track",
        status=201,
        json={"message": "success"},
        headers={"X-Request-Id": "r-2", "X-RateLimit-Remaining": "2999", "X-RateLimit-Limit": "3000"},
    )
    stream = io.StringIO()
    session, _ = make_session(clock=clock, logger=make_logger(stream=stream))

    session.request("POST", "/users/track", buckets=["x.minute"], json={"attributes": [{"email": "a@x.io"}]})

    calls = [r for r in log_records(stream) if r["event"] == "api_call"]
    assert [(c["status"], c["attempt"]) for c in calls] == [(503, 1), (201, 2)]
    last = calls[-1]
    assert {k: last[k] for k in ("api", "method", "path", "request_id", "bucket_remaining")} == {
        "api": "braze",
        "method": "POST",
        "path": "/users/track",
        "request_id": "r-2",
        "bucket_remaining": 2999,
    }
    assert isinstance(last["duration_ms"], float)
    assert "request_body" not in last and "response_body" not in last
    assert any(r["event"] == "api_retry" for r in log_records(stream))
    assert BRAZE_KEY not in stream.getvalue()


def test_bodies_are_logged_on_request_truncated_and_masked(
    rsps: responses.RequestsMock, clock: FakeClock
) -> None:
    rsps.add(
        responses.POST, f"{BREVO}/contacts/import", status=202, body=f'{{"echo":"{BREVO_KEY}","processId":3}}'
    )
    stream = io.StringIO()
    # The logger is given no secrets: ApiSession masks what it writes on its own.
    session, _ = make_session("brevo", clock=clock, logger=make_logger(stream=stream), log_bodies=True)

    session.request(
        "POST", "/contacts/import", buckets=["x.minute"], json={"jsonBody": ["y" * 5000], "k": BREVO_KEY}
    )

    (record,) = log_records(stream)
    assert record["response_body"] == '{"echo":"***","processId":3}'
    assert len(record["request_body"]) <= 2001
    assert BREVO_KEY not in stream.getvalue()


# ----------------------------------------------------------------- export downloads
def test_stream_get_downloads_without_auth_in_chunks(rsps: responses.RequestsMock, clock: FakeClock) -> None:
    rsps.add(responses.GET, EXPORT_URL, body=b"0123456789" * 10)
    stream = io.StringIO()
    session, _ = make_session(clock=clock, logger=make_logger(stream=stream))

    chunks = list(session.stream_get(EXPORT_URL, max_bytes=1000, chunk_size=30))

    assert b"".join(chunks) == b"0123456789" * 10
    assert max(len(c) for c in chunks) <= 30
    sent = rsps.calls[0].request.headers
    assert "Authorization" not in sent and "api-key" not in sent
    assert "sig0123456789" not in stream.getvalue()  # the signed query never reaches a log


def test_stream_get_403_means_not_ready(rsps: responses.RequestsMock, clock: FakeClock) -> None:
    rsps.add(responses.GET, EXPORT_URL, status=403, body="<Error><Code>AccessDenied</Code></Error>")
    session, _ = make_session(clock=clock)

    with pytest.raises(ExportNotReady) as caught:
        list(session.stream_get(EXPORT_URL, max_bytes=1000))

    assert isinstance(caught.value, TransientApiError)
    assert "not ready" in caught.value.user_message
    assert "sig0123456789" not in str(caught.value)
    assert len(rsps.calls) == 1


def test_stream_get_refuses_a_body_over_the_limit(rsps: responses.RequestsMock, clock: FakeClock) -> None:
    rsps.add(responses.GET, EXPORT_URL, body=b"x" * 100, auto_calculate_content_length=True)
    session, _ = make_session(clock=clock)

    with pytest.raises(PermanentApiError, match="larger than the 50 bytes"):
        list(session.stream_get(EXPORT_URL, max_bytes=50))


def test_stream_get_stops_mid_stream_when_the_limit_is_passed(
    rsps: responses.RequestsMock, clock: FakeClock
) -> None:
    rsps.add(responses.GET, EXPORT_URL, body=b"x" * 100)  # no Content-Length: counted while reading
    session, _ = make_session(clock=clock)
    received: list[bytes] = []

    with pytest.raises(PermanentApiError):
        for chunk in session.stream_get(EXPORT_URL, max_bytes=50, chunk_size=20):
            received.append(chunk)

    assert sum(map(len, received)) <= 50


def test_stream_get_and_probe_refuse_plain_http_off_loopback(clock: FakeClock) -> None:
    session, _ = make_session(clock=clock)
    with pytest.raises(ValueError, match="https"):
        session.stream_get("http://bucket.example/export.zip?sig=1", max_bytes=10)
    with pytest.raises(ValueError, match="https"):
        session.probe_url("http://bucket.example/export.zip?sig=1")


def test_probe_url_reports_status_with_a_ranged_get(rsps: responses.RequestsMock, clock: FakeClock) -> None:
    rsps.add(responses.GET, EXPORT_URL, status=403)
    rsps.add(responses.GET, EXPORT_URL, status=206, body=b"P")
    session, _ = make_session(clock=clock)

    assert session.probe_url(EXPORT_URL) == 403
    assert session.probe_url(EXPORT_URL) == 206
    sent = rsps.calls[0].request.headers
    assert sent["Range"] == "bytes=0-0"
    assert "Authorization" not in sent


def test_a_call_holds_its_rate_limit_slot_from_its_answer(rsps: responses.RequestsMock, clock: FakeClock) -> None:
    # A slow server counts the call whenever it arrives: the next one waits a window after the answer.
    def slow_answer(request: Any) -> tuple[int, dict[str, str], str]:
        clock.sleep(0.3)
        return 200, {}, "{}"

    rsps.add_callback(responses.GET, f"{BREVO}/contacts", callback=slow_answer)
    rsps.add(responses.GET, f"{BREVO}/contacts", json={})
    limiter = RateLimiter([Bucket("one.second", 1, 1.0)], clock=clock, sleep=clock.sleep, safety=0.0)
    session = ApiSession(
        api="brevo", base_url=BREVO, auth_headers={"api-key": BREVO_KEY}, limiter=limiter, sleep=clock.sleep
    )

    session.request("GET", "/contacts", buckets=["one.second"])
    answered_at = clock()
    session.request("GET", "/contacts", buckets=["one.second"])

    assert clock() - answered_at == pytest.approx(1.0)
    assert limiter.snapshot()["one.second"]["used_in_window"] == 1.0  # nothing left waiting for an answer


def test_a_netrc_file_never_changes_the_auth_we_send(
    rsps: responses.RequestsMock, clock: FakeClock, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text(
        "".join(
            f"machine {host} login someone password netrc-password\n"
            for host in ("rest.iad-01.braze.com", "api.brevo.com", "bucket.example")
        ),
        encoding="utf-8",
    )
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    rsps.add(responses.POST, f"{BRAZE}/users/track", json={"message": "success"}, status=201)
    rsps.add(responses.GET, f"{BREVO}/account", json={})
    rsps.add(responses.GET, EXPORT_URL, body=b"zip")
    rsps.add(responses.GET, EXPORT_URL, status=206, body=b"z")
    braze, _ = make_session(clock=clock)
    brevo, _ = make_session("brevo", clock=clock)

    braze.request("POST", "/users/track", buckets=["x.minute"], json={"attributes": []})
    brevo.request("GET", "/account", buckets=["x.minute"])
    assert b"".join(braze.stream_get(EXPORT_URL, max_bytes=100)) == b"zip"
    assert braze.probe_url(EXPORT_URL) == 206

    sent = [call.request.headers for call in rsps.calls]
    assert sent[0]["Authorization"] == f"Bearer {BRAZE_KEY}"
    assert sent[1]["api-key"] == BREVO_KEY
    assert all("Authorization" not in headers for headers in sent[1:])


def test_repr_hides_the_key(clock: FakeClock) -> None:
    session, _ = make_session(clock=clock)
    assert BRAZE_KEY not in repr(session)
    assert "rest.iad-01.braze.com" in repr(session)
