"""BrevoClient against `responses`: shapes, paging, membership quirks, limits and failures."""

from __future__ import annotations

import io
import json
import random
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
import responses
from responses import matchers

from tajo_braze.clients.brevo import (
    BREVO_BUCKETS,
    CONTACTS_IN_FLIGHT,
    IMPORT_BODY_MAX_BYTES,
    BrevoClient,
    format_since,
    parse_timestamp,
)
from tajo_braze.errors import AuthError, PermanentApiError, PermissionDenied, RateLimited, TransientApiError
from tajo_braze.http import ApiSession, RetryPolicy
from tajo_braze.log import make_logger
from tajo_braze.models import (
    BrevoAccount,
    BrevoAttribute,
    BrevoContact,
    BrevoFolder,
    BrevoList,
    ImportProcess,
    ListMembershipResult,
)
from tajo_braze.ratelimit import RateLimiter

BASE = "https://api.brevo.com/v3"
KEY = "xkeysib-a1b2c3d4e5f6a7b8-Zz9SECRET"


class FakeClock:
    def __init__(self) -> None:
        self.now = 10.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()  # contact pages are fetched from two threads

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(round(seconds, 6))
            self.now += seconds


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(clock: FakeClock) -> RateLimiter:
    return RateLimiter(BREVO_BUCKETS, clock=clock, sleep=clock.sleep)


@pytest.fixture
def log_stream() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def client(clock: FakeClock, limiter: RateLimiter, log_stream: io.StringIO) -> BrevoClient:
    session = ApiSession(
        api="brevo",
        base_url=BASE,
        auth_headers={"api-key": KEY},
        limiter=limiter,
        retry=RetryPolicy(max_attempts=3),
        logger=make_logger(stream=log_stream),
        log_bodies=True,
        sleep=clock.sleep,
        rng=random.Random(0),
    )
    return BrevoClient(session)


def used(limiter: RateLimiter, bucket: str) -> float:
    return limiter.snapshot()[bucket]["used_in_window"]


def contact(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": i,
        "email": f"c{i}@x.io",
        "emailBlacklisted": False,
        "smsBlacklisted": False,
        "createdAt": "2024-01-01T00:00:00.000+02:00",
        "modifiedAt": "2024-02-01T10:00:00Z",
        "listIds": [3],
        "attributes": {"EXT_ID": f"u{i}", "FIRSTNAME": "A"},
        **extra,
    }


# ----------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-05-02T16:40:31Z", datetime(2024, 5, 2, 16, 40, 31, tzinfo=UTC)),
        (
            "2024-05-02T16:40:31.123+02:00",
            datetime(2024, 5, 2, 16, 40, 31, 123000, tzinfo=timezone(timedelta(hours=2))),
        ),
        (
            "2024-05-02T16:40:31.1234567-0530",
            datetime(2024, 5, 2, 16, 40, 31, 123456, tzinfo=timezone(-timedelta(hours=5, minutes=30))),
        ),
        ("2024-05-02 16:40", datetime(2024, 5, 2, 16, 40, tzinfo=UTC)),
        ("2024-05-02T16:40:31", datetime(2024, 5, 2, 16, 40, 31, tzinfo=UTC)),  # no zone: UTC
        ("2024-05-02T16:40:31.5+0200", datetime(2024, 5, 2, 14, 40, 31, 500000, tzinfo=UTC)),
        ("2024-05-02T16:40:31UTC", datetime(2024, 5, 2, 16, 40, 31, tzinfo=UTC)),
        ("2024-05-02T16:40:31.000+00:00 ", datetime(2024, 5, 2, 16, 40, 31, tzinfo=UTC)),
        ("2024-05-02T25:40:31Z", None),
        ("not a date", None),
        (None, None),
        ("2024-13-02T00:00:00Z", None),
    ],
)
def test_parse_timestamp_accepts_the_shapes_brevo_sends(raw: Any, expected: datetime | None) -> None:
    assert parse_timestamp(raw) == expected


def test_format_since_uses_an_explicit_utc_offset() -> None:
    paris = timezone(timedelta(hours=2))
    assert (
        format_since(datetime(2024, 1, 1, 2, 0, 0, 987654, tzinfo=paris)) == "2024-01-01T00:00:00.987+00:00"
    )
    assert format_since(datetime(2024, 1, 1)) == "2024-01-01T00:00:00.000+00:00"


# ----------------------------------------------------------------- account
def test_get_account(rsps: responses.RequestsMock, client: BrevoClient, limiter: RateLimiter) -> None:
    rsps.add(
        responses.GET,
        f"{BASE}/account",
        json={
            "email": "owner@x.com",
            "companyName": "Acme",
            "plan": [{"type": "free", "credits": 250}, {"type": "sms"}],
            "dateTimePreferences": {"timezone": "Europe/Paris"},
        },
        match=[matchers.header_matcher({"api-key": KEY, "Accept": "application/json"})],
    )

    assert client.get_account() == BrevoAccount("owner@x.com", "Acme", ("free", "sms"), "Europe/Paris")
    assert used(limiter, "brevo.other") == 1


def test_401_names_the_brevo_key(
    rsps: responses.RequestsMock, client: BrevoClient, log_stream: io.StringIO
) -> None:
    rsps.add(
        responses.GET,
        f"{BASE}/account",
        status=401,
        json={"code": "unauthorized", "message": f"Key not found: {KEY}"},
        headers={"sib-request-id": "abc-1"},
    )

    with pytest.raises(AuthError) as caught:
        client.get_account()

    assert caught.value.user_message.startswith("Brevo rejected the API key (401).")
    assert "BREVO_API_KEY" in caught.value.fix
    assert caught.value.request_id == "abc-1"
    assert KEY not in str(caught.value) and KEY not in caught.value.detail
    assert KEY not in log_stream.getvalue()


# ----------------------------------------------------------------- contacts
def test_get_contacts_page_sends_modified_since_with_offset(
    rsps: responses.RequestsMock, client: BrevoClient, limiter: RateLimiter
) -> None:
    rsps.add(
        responses.GET,
        f"{BASE}/contacts",
        json={"contacts": [contact(1)], "count": 17},
        match=[
            matchers.query_param_matcher(
                {
                    "limit": "1000",
                    "offset": "0",
                    "sort": "asc",
                    "modifiedSince": "2024-01-01T00:00:00.000+00:00",
                }
            )
        ],
    )

    page = client.get_contacts_page(modified_since=datetime(2024, 1, 1, tzinfo=UTC))

    assert page.count == 17
    assert page.contacts == (
        BrevoContact(
            id=1,
            email="c1@x.io",
            ext_id="u1",
            email_blacklisted=False,
            sms_blacklisted=False,
            created_at=datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=2))),
            modified_at=datetime(2024, 2, 1, 10, tzinfo=UTC),
            list_ids=(3,),
            attributes={"EXT_ID": "u1", "FIRSTNAME": "A"},
        ),
    )
    # '+' must travel percent-encoded, or Brevo reads a space.
    assert "modifiedSince=2024-01-01T00%3A00%3A00.000%2B00%3A00" in str(rsps.calls[0].request.url)
    assert used(limiter, "brevo.contacts_s") == 1 and used(limiter, "brevo.contacts_h") == 1
    with pytest.raises(ValueError):
        client.get_contacts_page(limit=1001)


def test_contact_items_of_odd_shapes_are_read_leniently(rsps: responses.RequestsMock, client: BrevoClient) -> None:
    odd = [
        {"id": "7", "email": "", "listIds": ["3", "x", True, 4], "attributes": None},
        "not a contact",
        {"id": True, "emailBlacklisted": 1, "listIds": "3", "attributes": {"EXT_ID": 12}},
    ]
    rsps.add(responses.GET, f"{BASE}/contacts", json={"contacts": odd, "count": 2})

    first, second = client.get_contacts_page().contacts

    assert (first.id, first.email, first.list_ids, first.attributes, first.ext_id) == (7, None, (3, 4), {}, None)
    assert (second.id, second.email_blacklisted, second.list_ids, second.ext_id) == (0, True, (), "12")


def test_iter_contacts_pages_until_short_and_dedupes_shifted_ids(
    rsps: responses.RequestsMock, client: BrevoClient
) -> None:
    rsps.add(
        responses.GET,
        f"{BASE}/contacts",
        json={"contacts": [contact(1), contact(2)], "count": 4},
        match=[matchers.query_param_matcher({"limit": "2", "offset": "0", "sort": "asc"})],
    )
    # A contact changed mid-crawl shifted the order: id 2 shows up again.
    rsps.add(
        responses.GET,
        f"{BASE}/contacts",
        json={"contacts": [contact(2), contact(3)], "count": 4},
        match=[matchers.query_param_matcher({"limit": "2", "offset": "2", "sort": "asc"})],
    )
    rsps.add(
        responses.GET,
        f"{BASE}/contacts",
        json={"contacts": [contact(4)], "count": 4},
        match=[matchers.query_param_matcher({"limit": "2", "offset": "4", "sort": "asc"})],
    )

    assert [c.id for c in client.iter_contacts(limit=2)] == [1, 2, 3, 4]


def test_iter_contacts_stops_when_a_page_repeats(rsps: responses.RequestsMock, client: BrevoClient) -> None:
    rsps.add(responses.GET, f"{BASE}/contacts", json={"contacts": [contact(1), contact(2)]})
    rsps.add(responses.GET, f"{BASE}/contacts", json={"contacts": [contact(1), contact(2)]})

    assert [c.id for c in client.iter_contacts(limit=2)] == [1, 2]
    assert len(rsps.calls) == 2


# ----------------------------------------------------------------- contacts read with pages in flight
# A test waits at most this long for another request to reach a point; a correct read never waits it out.
HANDOFF_S = 10.0
FETCH_THREADS = "brevo-contacts"


def fetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(FETCH_THREADS) and t.is_alive()]


class ContactPages:
    """GET /contacts by offset over ids 0..total-1, recording the offsets asked for.

    `before[offset]` runs in the request's thread before its answer is built, which lets a test
    hold one request until another has reached a given point.
    """

    def __init__(self, total: int, *, count: int | None = None) -> None:
        self.total = total
        self.count = total if count is None else count
        self.offsets: list[int] = []
        self.before: dict[int, Callable[[], None]] = {}
        self._answered: dict[int, threading.Event] = {}
        self._lock = threading.Lock()

    def answered(self, offset: int) -> threading.Event:
        with self._lock:
            return self._answered.setdefault(offset, threading.Event())

    @property
    def answered_offsets(self) -> set[int]:
        with self._lock:
            return {offset for offset, event in self._answered.items() if event.is_set()}

    def __call__(self, request: Any) -> tuple[int, dict[str, str], str]:
        query = request.params
        offset, limit = int(query["offset"]), int(query["limit"])
        assert query["sort"] == "asc"
        with self._lock:
            self.offsets.append(offset)
        hook = self.before.get(offset)
        if hook is not None:
            hook()
        ids = range(offset, min(offset + limit, self.total))
        body = json.dumps({"contacts": [contact(i) for i in ids], "count": self.count})
        self.answered(offset).set()
        return 200, {}, body


def assert_set(event: threading.Event) -> None:
    assert event.wait(HANDOFF_S)


def serve_pages(rsps: responses.RequestsMock, pages: ContactPages) -> None:
    rsps.add_callback(responses.GET, f"{BASE}/contacts", callback=pages)


def test_contact_pages_arrive_in_order_while_two_are_in_flight(
    rsps: responses.RequestsMock, client: BrevoClient, limiter: RateLimiter
) -> None:
    pages = ContactPages(119)  # 39 full pages of 3, then a short one of 2
    serve_pages(rsps, pages)
    overtaken: list[int] = []

    def answer_after_the_next(offset: int) -> Callable[[], None]:
        def hook() -> None:
            if pages.answered(offset + 3).wait(HANDOFF_S):
                overtaken.append(offset)

        return hook

    # Every other page answers only after the one behind it: the read must still yield in order.
    held = list(range(3, 114, 6))
    for offset in held:
        pages.before[offset] = answer_after_the_next(offset)

    ids = [c.id for c in client.iter_contacts(limit=3)]

    assert ids == list(range(119))
    assert sorted(pages.offsets) == list(range(0, 120, 3))  # each page once, none past the end
    assert overtaken == held  # the next page was always in flight beside a held one
    assert used(limiter, "brevo.contacts_h") == 40  # every request went through the limiter
    assert fetch_threads() == []


def test_contact_pages_are_requested_ahead_only_within_the_count(
    rsps: responses.RequestsMock, client: BrevoClient
) -> None:
    pages = ContactPages(5)
    serve_pages(rsps, pages)
    second_page_read = threading.Event()
    # The last page answers once the read is past the point where it could ask for one more.
    pages.before[4] = lambda: assert_set(second_page_read)
    ids: list[int] = []

    for c in client.iter_contacts(limit=2):
        ids.append(c.id)
        if c.id == 3:
            second_page_read.set()

    assert ids == [0, 1, 2, 3, 4]
    # Offset 6 would be past the count: never asked for, not even ahead of need.
    assert sorted(pages.offsets) == [0, 2, 4]


def test_a_single_page_read_costs_one_call(rsps: responses.RequestsMock, client: BrevoClient) -> None:
    pages = ContactPages(2)
    serve_pages(rsps, pages)

    assert [c.id for c in client.iter_contacts(limit=3)] == [0, 1]
    # Until the first answer gives the count, a second request could be one past the end.
    assert pages.offsets == [0]


def test_the_page_after_the_count_is_read_only_after_a_full_page(
    rsps: responses.RequestsMock, client: BrevoClient
) -> None:
    pages = ContactPages(4)  # two full pages: the count says nothing is left after them
    serve_pages(rsps, pages)
    asked_early: list[bool] = []
    pages.before[2] = lambda: asked_early.append(4 in pages.offsets)

    assert [c.id for c in client.iter_contacts(limit=2)] == [0, 1, 2, 3]
    # Same calls as one reader: the empty page at offset 4 is read, but not ahead of need.
    assert pages.offsets == [0, 2, 4]
    assert asked_early == [False]


def test_the_page_after_a_full_one_is_read_even_when_the_count_is_stale(
    rsps: responses.RequestsMock, client: BrevoClient
) -> None:
    pages = ContactPages(7, count=4)  # contacts created since the count was taken
    serve_pages(rsps, pages)

    assert [c.id for c in client.iter_contacts(limit=2)] == list(range(7))
    assert pages.offsets == [0, 2, 4, 6]


def test_an_error_on_page_2_with_page_3_in_flight_is_raised_and_leaves_no_thread(
    rsps: responses.RequestsMock, client: BrevoClient
) -> None:
    pages = ContactPages(10)
    page3_started = threading.Event()
    page2_failing = threading.Event()
    page3_in_flight: list[bool] = []

    def page2(request: Any) -> tuple[int, dict[str, str], str]:
        page3_in_flight.append(page3_started.wait(HANDOFF_S))
        page2_failing.set()
        return 400, {}, json.dumps({"code": "invalid_parameter", "message": "offset out of reach"})

    def page3() -> None:
        page3_started.set()
        page2_failing.wait(HANDOFF_S)

    pages.before[4] = page3
    rsps.add_callback(
        responses.GET,
        f"{BASE}/contacts",
        callback=page2,
        match=[matchers.query_param_matcher({"limit": "2", "offset": "2", "sort": "asc"})],
    )
    serve_pages(rsps, pages)
    seen: list[int] = []

    with pytest.raises(PermanentApiError, match="offset out of reach"):
        for c in client.iter_contacts(limit=2):
            seen.append(c.id)

    assert seen == [0, 1]
    assert page3_in_flight == [True]
    assert 4 in pages.answered_offsets  # the request in flight was waited for, not abandoned
    assert fetch_threads() == []
    assert sorted(pages.offsets) == [0, 4]  # offset 2 went to the failing answer; nothing after 4
    assert client.session.call_counts == {"GET /contacts": 3}


def test_a_5xx_on_a_page_in_flight_is_retried_in_place(
    rsps: responses.RequestsMock, client: BrevoClient
) -> None:
    rsps.add(
        responses.GET,
        f"{BASE}/contacts",
        status=503,
        match=[matchers.query_param_matcher({"limit": "2", "offset": "4", "sort": "asc"})],
    )
    pages = ContactPages(9)
    serve_pages(rsps, pages)

    assert [c.id for c in client.iter_contacts(limit=2)] == list(range(9))
    assert sorted(pages.offsets) == [0, 2, 4, 6, 8]
    assert client.session.retries == 1


def test_closing_the_read_early_waits_for_the_pages_in_flight_and_sends_no_more(
    rsps: responses.RequestsMock, client: BrevoClient
) -> None:
    pages = ContactPages(20)
    serve_pages(rsps, pages)
    started = {offset: threading.Event() for offset in (2, 4)}
    for offset, event in started.items():
        pages.before[offset] = event.set
    reader = client.iter_contacts(limit=2)

    assert next(reader).id == 0
    # The first page went out alone, then the next CONTACTS_IN_FLIGHT pages at once.
    assert CONTACTS_IN_FLIGHT == 2
    assert all(event.wait(HANDOFF_S) for event in started.values())
    reader.close()

    assert sorted(pages.offsets) == [0, 2, 4]  # nothing was sent after the close
    assert pages.answered_offsets == set(pages.offsets)
    assert fetch_threads() == []
    with pytest.raises(StopIteration):
        next(reader)


def test_get_contact_encodes_the_identifier_and_404_is_none(
    rsps: responses.RequestsMock, client: BrevoClient, log_stream: io.StringIO
) -> None:
    rsps.add(responses.GET, f"{BASE}/contacts/a%2Btag%40x.io", json=contact(7, email="a+tag@x.io"))
    rsps.add(
        responses.GET,
        f"{BASE}/contacts/u-9",
        status=404,
        json={"code": "document_not_found", "message": "Contact does not exist"},
        match=[matchers.query_param_matcher({"identifierType": "ext_id"})],
    )

    found = client.get_contact("a+tag@x.io")
    missing = client.get_contact("u-9", identifier_type="ext_id")

    assert found is not None and found.email == "a+tag@x.io" and found.id == 7
    assert missing is None
    assert rsps.calls[0].request.path_url == "/v3/contacts/a%2Btag%40x.io"
    assert client.session.call_counts == {"GET /contacts/{identifier}": 2}
    paths = {json.loads(line)["path"] for line in log_stream.getvalue().splitlines()}
    assert paths == {"/contacts/{identifier}"}  # the email stays out of the audit path


def test_create_contact_sends_only_given_keys(rsps: responses.RequestsMock, client: BrevoClient) -> None:
    rsps.add(
        responses.POST,
        f"{BASE}/contacts",
        status=201,
        json={"id": 21},
        match=[
            matchers.json_params_matcher(
                {"updateEnabled": False, "email": "a@x.io", "attributes": {"FIRSTNAME": "A"}, "listIds": [3]}
            )
        ],
    )
    rsps.add(
        responses.POST,
        f"{BASE}/contacts",
        status=204,
        match=[
            matchers.json_params_matcher({"updateEnabled": True, "ext_id": "u1", "emailBlacklisted": True})
        ],
    )

    assert client.create_contact(email="a@x.io", attributes={"FIRSTNAME": "A"}, list_ids=[3]) == 21
    assert client.create_contact(ext_id="u1", email_blacklisted=True, update_enabled=True) is None


def test_create_contact_duplicate_is_a_permanent_error(
    rsps: responses.RequestsMock, client: BrevoClient
) -> None:
    rsps.add(
        responses.POST,
        f"{BASE}/contacts",
        status=400,
        json={
            "code": "duplicate_parameter",
            "message": "Unable to create contact, email is already associated with another Contact",
            "metadata": {"duplicate_identifiers": ["email"]},
        },
    )

    with pytest.raises(PermanentApiError) as caught:
        client.create_contact(email="a@x.io")

    assert "duplicate_identifiers" in caught.value.body_excerpt
    assert len(rsps.calls) == 1


def test_create_contact_425_is_retried(
    rsps: responses.RequestsMock, client: BrevoClient, clock: FakeClock
) -> None:
    rsps.add(responses.POST, f"{BASE}/contacts", status=425, json={"code": "account_in_process"})
    rsps.add(responses.POST, f"{BASE}/contacts", status=201, json={"id": 5})

    assert client.create_contact(email="a@x.io") == 5
    assert len(clock.sleeps) == 1


def test_update_contact_sends_only_keys_that_are_not_none(
    rsps: responses.RequestsMock, client: BrevoClient
) -> None:
    rsps.add(
        responses.PUT,
        f"{BASE}/contacts/u1",
        status=204,
        match=[
            matchers.query_param_matcher({"identifierType": "ext_id"}),
            matchers.json_params_matcher(
                {"attributes": {"LASTNAME": "B"}, "emailBlacklisted": False, "unlinkListIds": [4]}
            ),
        ],
    )

    client.update_contact(
        "u1",
        identifier_type="ext_id",
        attributes={"LASTNAME": "B"},
        email_blacklisted=False,
        unlink_list_ids=[4],
    )


def test_delete_contact_treats_404_as_already_gone(rsps: responses.RequestsMock, client: BrevoClient) -> None:
    rsps.add(responses.DELETE, f"{BASE}/contacts/5", status=204)
    rsps.add(responses.DELETE, f"{BASE}/contacts/6", status=404, json={"code": "document_not_found"})

    assert client.delete_contact("5") is True
    assert client.delete_contact("6") is False


def test_contacts_429_waits_the_relative_reset(
    rsps: responses.RequestsMock, client: BrevoClient, clock: FakeClock
) -> None:
    rsps.add(
        responses.GET,
        f"{BASE}/contacts",
        status=429,
        json={"message": "Too many requests"},
        headers={
            "x-sib-ratelimit-limit": "10",
            "x-sib-ratelimit-remaining": "0",
            "x-sib-ratelimit-reset": "1",
        },
    )
    rsps.add(responses.GET, f"{BASE}/contacts", json={"contacts": [], "count": 0})

    assert client.get_contacts_page().contacts == ()
    assert clock.sleeps == [1.05]
    assert client.session.throttled_429 == 1


def test_429_that_outlasts_the_attempts_is_rate_limited(
    rsps: responses.RequestsMock, client: BrevoClient
) -> None:
    rsps.add(responses.GET, f"{BASE}/processes/4", status=429, headers={"X-Sib-Ratelimit-Reset": "5"})

    with pytest.raises(RateLimited) as caught:
        client.get_process(4)

    assert caught.value.retry_after == pytest.approx(5.05)
    assert len(rsps.calls) == 3


# ----------------------------------------------------------------- attributes
def test_list_and_create_attributes(rsps: responses.RequestsMock, client: BrevoClient) -> None:
    rsps.add(
        responses.GET,
        f"{BASE}/contacts/attributes",
        json={
            "attributes": [
                {"name": "FIRSTNAME", "category": "normal", "type": "text"},
                {"name": "SCORE", "category": "calculated", "calculatedValue": "x"},
            ]
        },
    )
    rsps.add(
        responses.POST,
        f"{BASE}/contacts/attributes/normal/LOYALTY_POINTS",
        status=201,
        match=[matchers.json_params_matcher({"type": "float"})],
    )
    rsps.add(
        responses.POST,
        f"{BASE}/contacts/attributes/normal/FIRSTNAME",
        status=400,
        json={"code": "invalid_parameter", "message": "Attribute name already exists"},
    )

    assert client.list_attributes() == [
        BrevoAttribute("FIRSTNAME", "normal", "text"),
        BrevoAttribute("SCORE", "calculated", None),
    ]
    client.create_attribute("LOYALTY_POINTS", type="float")
    client.create_attribute("FIRSTNAME", type="text")  # already there: fine


def test_create_attribute_other_400_is_raised(rsps: responses.RequestsMock, client: BrevoClient) -> None:
    rsps.add(
        responses.POST,
        f"{BASE}/contacts/attributes/normal/BAD",
        status=400,
        json={"code": "invalid_parameter", "message": "type is not valid"},
    )

    with pytest.raises(PermanentApiError, match="type is not valid"):
        client.create_attribute("BAD", type="nonsense")


# ----------------------------------------------------------------- lists and folders
def test_iter_lists_and_folders_page_by_50(rsps: responses.RequestsMock, client: BrevoClient) -> None:
    first = [{"id": i, "name": f"L{i}", "folderId": 1} for i in range(50)]
    rsps.add(
        responses.GET,
        f"{BASE}/contacts/lists",
        json={"lists": first, "count": 51},
        match=[matchers.query_param_matcher({"limit": "50", "offset": "0", "sort": "asc"})],
    )
    rsps.add(
        responses.GET,
        f"{BASE}/contacts/lists",
        json={"lists": [{"id": 50, "name": "L50"}], "count": 51},
        match=[matchers.query_param_matcher({"limit": "50", "offset": "50", "sort": "asc"})],
    )
    rsps.add(
        responses.GET, f"{BASE}/contacts/folders", json={"folders": [{"id": 1, "name": "Braze"}], "count": 1}
    )

    lists = list(client.iter_lists())

    assert len(lists) == 51
    assert lists[0] == BrevoList(0, "L0", 1)
    assert lists[-1] == BrevoList(50, "L50", None)
    assert list(client.iter_folders()) == [BrevoFolder(1, "Braze")]


def test_create_list_and_folder_are_not_replayed(rsps: responses.RequestsMock, client: BrevoClient) -> None:
    rsps.add(
        responses.POST,
        f"{BASE}/contacts/folders",
        status=201,
        json={"id": 9},
        match=[matchers.json_params_matcher({"name": "Braze"})],
    )
    rsps.add(
        responses.POST,
        f"{BASE}/contacts/lists",
        status=201,
        json={"id": 12},
        match=[matchers.json_params_matcher({"name": "braze_vip", "folderId": 9})],
    )
    rsps.add(responses.POST, f"{BASE}/contacts/lists", status=500)

    assert client.create_folder("Braze") == 9
    assert client.create_list("braze_vip", folder_id=9) == 12
    with pytest.raises(TransientApiError) as caught:
        client.create_list("braze_vip", folder_id=9)
    assert "maybe_applied=true" in caught.value.detail


def test_iter_list_members_pages_and_parses(rsps: responses.RequestsMock, client: BrevoClient) -> None:
    rsps.add(
        responses.GET,
        f"{BASE}/contacts/lists/10/contacts",
        json={"contacts": [contact(1), contact(2)], "count": 3},
        match=[matchers.query_param_matcher({"limit": "2", "offset": "0", "sort": "asc"})],
    )
    rsps.add(
        responses.GET,
        f"{BASE}/contacts/lists/10/contacts",
        json={"contacts": [contact(3)], "count": 3},
        match=[matchers.query_param_matcher({"limit": "2", "offset": "2", "sort": "asc"})],
    )

    members = list(client.iter_list_members(10, limit=2))

    assert [m.ext_id for m in members] == ["u1", "u2", "u3"]
    assert client.session.call_counts == {"GET /contacts/lists/{id}/contacts": 2}
    with pytest.raises(ValueError):
        list(client.iter_list_members(10, limit=501))


def test_add_to_list_parses_with_and_without_the_contacts_wrapper(
    rsps: responses.RequestsMock, client: BrevoClient
) -> None:
    rsps.add(
        responses.POST,
        f"{BASE}/contacts/lists/10/contacts/add",
        status=201,
        json={"contacts": {"success": ["a@x.io"], "failure": ["b@x.io"]}},
        match=[matchers.json_params_matcher({"emails": ["a@x.io", "b@x.io"]})],
    )
    rsps.add(
        responses.POST,
        f"{BASE}/contacts/lists/10/contacts/remove",
        status=201,
        json={"success": [1, 2], "failure": []},
        match=[matchers.json_params_matcher({"ids": [1, 2]})],
    )

    assert client.add_to_list(10, emails=["a@x.io", "b@x.io"]) == ListMembershipResult(
        ("a@x.io",), ("b@x.io",)
    )
    assert client.remove_from_list(10, ids=[1, 2]) == ListMembershipResult(("1", "2"), ())
    assert client.session.call_counts == {
        "POST /contacts/lists/{id}/contacts/add": 1,
        "POST /contacts/lists/{id}/contacts/remove": 1,
    }


def test_add_to_list_already_in_list_is_a_result_not_an_error(
    rsps: responses.RequestsMock, client: BrevoClient
) -> None:
    rsps.add(
        responses.POST,
        f"{BASE}/contacts/lists/10/contacts/add",
        status=400,
        json={"code": "invalid_parameter", "message": "Contact already in list and/or does not exist"},
        match=[matchers.json_params_matcher({"extIds": ["u1", "u2"]})],
    )

    result = client.add_to_list(10, ext_ids=["u1", "u2"])

    assert result == ListMembershipResult(success=(), failure=("u1", "u2"))


def test_add_to_list_other_400_is_raised(rsps: responses.RequestsMock, client: BrevoClient) -> None:
    rsps.add(
        responses.POST,
        f"{BASE}/contacts/lists/99/contacts/add",
        status=400,
        json={"code": "invalid_parameter", "message": "listId is invalid"},
    )

    with pytest.raises(PermanentApiError, match="listId is invalid"):
        client.add_to_list(99, emails=["a@x.io"])


def test_list_membership_checks_its_arguments(client: BrevoClient) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        client.add_to_list(1)
    with pytest.raises(ValueError, match="exactly one"):
        client.remove_from_list(1, emails=["a@x.io"], ids=[1])
    with pytest.raises(ValueError, match="at most 150"):
        client.add_to_list(1, ids=list(range(151)))
    assert client.session.call_counts == {}


def test_list_403_is_permission_denied_with_a_fix(rsps: responses.RequestsMock, client: BrevoClient) -> None:
    rsps.add(
        responses.GET,
        f"{BASE}/contacts/lists",
        status=403,
        json={"code": "permission_denied", "message": "Unauthorized IP address"},
    )

    with pytest.raises(PermissionDenied) as caught:
        list(client.iter_lists())

    assert "permission_denied" in caught.value.user_message
    assert "`contacts`" in caught.value.fix


# ----------------------------------------------------------------- imports and processes
def test_import_contacts_builds_the_json_body(rsps: responses.RequestsMock, client: BrevoClient) -> None:
    rows = [{"email": "a@x.io", "attributes": {"EXT_ID": "u1"}}]
    rsps.add(
        responses.POST,
        f"{BASE}/contacts/import",
        status=202,
        json={"processId": 78},
        match=[
            matchers.json_params_matcher(
                {
                    "jsonBody": rows,
                    "updateExistingContacts": True,
                    "emptyContactsAttributes": False,
                    "emailBlacklist": False,
                    "smsBlacklist": False,
                    "disableNotification": True,
                    "listIds": [10],
                    "notifyUrl": "https://hook.example/import",
                }
            )
        ],
    )

    assert client.import_contacts(rows, list_ids=[10], notify_url="https://hook.example/import") == 78


def test_import_contacts_accepts_preserialised_bytes_and_refuses_oversize(
    rsps: responses.RequestsMock, client: BrevoClient
) -> None:
    body = orjson.dumps({"jsonBody": [{"email": "a@x.io"}], "listIds": [3]})
    rsps.add(
        responses.POST,
        f"{BASE}/contacts/import",
        status=202,
        json={"processId": 5},
        match=[matchers.json_params_matcher(json.loads(body))],
    )

    assert client.import_contacts(body) == 5
    with pytest.raises(ValueError, match="at most"):
        client.import_contacts(b" " * (IMPORT_BODY_MAX_BYTES + 1))


def test_import_contacts_is_retried_after_a_5xx(
    rsps: responses.RequestsMock, client: BrevoClient, clock: FakeClock
) -> None:
    rsps.add(responses.POST, f"{BASE}/contacts/import", status=503)
    rsps.add(responses.POST, f"{BASE}/contacts/import", status=202, json={"processId": 6})

    assert client.import_contacts([{"email": "a@x.io"}]) == 6
    assert len(clock.sleeps) == 1


def test_get_and_list_processes(
    rsps: responses.RequestsMock, client: BrevoClient, limiter: RateLimiter
) -> None:
    process = {
        "id": 217,
        "name": "IMPORTUSER",
        "status": "completed",
        "info": {"import": {"invalid_emails": 3, "duplicate_email_id": "https://x/dup.csv"}},
        "error": None,
    }
    rsps.add(responses.GET, f"{BASE}/processes/217", json=process)
    rsps.add(
        responses.GET,
        f"{BASE}/processes",
        json={"count": 1, "processes": [{"id": 218, "name": "IMPORTUSER", "status": "in_process"}]},
        match=[matchers.query_param_matcher({"limit": "50", "offset": "0", "sort": "desc"})],
    )

    got = client.get_process(217)
    listed = client.list_processes()

    assert got == ImportProcess(
        217, "IMPORTUSER", "completed", {"invalid_emails": 3, "duplicate_email_id": "https://x/dup.csv"}, None
    )
    assert got.finished
    assert listed == [ImportProcess(218, "IMPORTUSER", "in_process", {}, None)]
    assert not listed[0].finished
    assert used(limiter, "brevo.other") == 2
    assert client.session.call_counts == {"GET /processes/{id}": 1, "GET /processes": 1}


# ----------------------------------------------------------------- events, webhooks, products
def test_create_events_batch_wraps_events_and_returns_the_answer(
    rsps: responses.RequestsMock, client: BrevoClient, limiter: RateLimiter
) -> None:
    events = [
        {"event_name": "order", "identifiers": {"ext_id": "u1"}},
        {"event_name": "x", "identifiers": {}},
    ]
    rsps.add(
        responses.POST,
        f"{BASE}/events/batch",
        status=207,
        json={"status": "partial", "errors": [{"eventIndex": [1], "message": "identifiers required"}]},
        match=[matchers.json_params_matcher({"events": events})],
    )

    answer = client.create_events_batch(events)

    assert answer["errors"] == [{"eventIndex": [1], "message": "identifiers required"}]
    assert used(limiter, "brevo.events_s") == 1 and used(limiter, "brevo.events_h") == 1
    assert used(limiter, "brevo.contacts_s") == 0


def test_events_are_never_replayed_after_a_5xx(rsps: responses.RequestsMock, client: BrevoClient) -> None:
    rsps.add(responses.POST, f"{BASE}/events/batch", status=504)
    rsps.add(responses.POST, f"{BASE}/events", status=500)

    with pytest.raises(TransientApiError):
        client.create_events_batch([{"event_name": "a", "identifiers": {"ext_id": "u"}}])
    with pytest.raises(TransientApiError):
        client.create_event({"event_name": "a", "identifiers": {"ext_id": "u"}})

    assert len(rsps.calls) == 2


def test_create_event_posts_one_event(rsps: responses.RequestsMock, client: BrevoClient) -> None:
    event = {"event_name": "signup", "identifiers": {"email_id": "a@x.io"}}
    rsps.add(responses.POST, f"{BASE}/events", status=204, match=[matchers.json_params_matcher(event)])

    client.create_event(event)


def test_list_webhooks(rsps: responses.RequestsMock, client: BrevoClient) -> None:
    rsps.add(responses.GET, f"{BASE}/webhooks", json={"webhooks": [{"id": 1, "url": "https://h.example"}]})

    assert client.list_webhooks() == [{"id": 1, "url": "https://h.example"}]


def test_upsert_products(rsps: responses.RequestsMock, client: BrevoClient, limiter: RateLimiter) -> None:
    products = [{"id": "p1", "name": "Pizza"}]
    rsps.add(
        responses.POST,
        f"{BASE}/products/batch",
        status=201,
        json={"createdCount": 1, "updatedCount": 0},
        match=[matchers.json_params_matcher({"products": products, "updateEnabled": True})],
    )

    assert client.upsert_products(products) == {"createdCount": 1, "updatedCount": 0}
    assert used(limiter, "brevo.products_s") == 1
    with pytest.raises(ValueError, match="at most 100"):
        client.upsert_products([{"id": str(i)} for i in range(101)])


def test_402_explains_credits(rsps: responses.RequestsMock, client: BrevoClient) -> None:
    rsps.add(
        responses.POST,
        f"{BASE}/products/batch",
        status=402,
        json={"code": "not_enough_credits", "message": "Plan does not allow ecommerce"},
    )

    with pytest.raises(PermissionDenied) as caught:
        client.upsert_products([{"id": "p"}])

    assert "credits" in caught.value.user_message
    assert "Plan & Usage" in caught.value.fix


def test_audit_log_never_holds_the_key(
    rsps: responses.RequestsMock, client: BrevoClient, log_stream: io.StringIO
) -> None:
    rsps.add(responses.GET, f"{BASE}/webhooks", json={"webhooks": [], "note": KEY})

    client.list_webhooks()

    records = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    assert [r["event"] for r in records] == ["api_call"]
    assert "***" in records[0]["response_body"]
    assert KEY not in log_stream.getvalue()
