"""BrazeClient against `responses`: request shapes, paging, partial errors, limits and failures."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
import responses
from responses import matchers

from tajo_braze.clients.braze import (
    BODY_LIMIT_BYTES,
    BRAZE_BUCKETS,
    BrazeClient,
    next_link_cursor,
    parse_track_errors,
)
from tajo_braze.errors import AuthError, PermanentApiError, PermissionDenied, RateLimited, TransientApiError
from tajo_braze.http import ApiSession, RetryPolicy
from tajo_braze.models import (
    BrazeUser,
    Campaign,
    Canvas,
    EmailAddressEvent,
    Segment,
    SegmentExportJob,
    TrackError,
    TrackResult,
)
from tajo_braze.ratelimit import RateLimiter

BASE = "https://rest.fra-01.braze.eu"
KEY = "braze-rest-9f8e7d6c-SECRET"
NOW_EPOCH = 1_700_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 10.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
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
    return RateLimiter(BRAZE_BUCKETS, clock=clock, sleep=clock.sleep)


@pytest.fixture
def client(clock: FakeClock, limiter: RateLimiter) -> BrazeClient:
    session = ApiSession(
        api="braze",
        base_url=BASE,
        auth_headers={"Authorization": f"Bearer {KEY}"},
        limiter=limiter,
        retry=RetryPolicy(max_attempts=3),
        sleep=clock.sleep,
        rng=random.Random(0),
        wall_clock=lambda: NOW_EPOCH,
    )
    return BrazeClient(session)


def used(limiter: RateLimiter, bucket: str) -> float:
    return limiter.snapshot()[bucket]["used_in_window"]


def named(prefix: str, start: int, count: int) -> list[dict[str, Any]]:
    return [
        {"id": f"{prefix}{i}", "name": f"{prefix} {i}", "tags": ["t"]} for i in range(start, start + count)
    ]


# ----------------------------------------------------------------- /users/track
def test_track_sends_arrays_with_batch_header_and_parses_counts(
    rsps: responses.RequestsMock, client: BrazeClient, limiter: RateLimiter
) -> None:
    attributes = [{"external_id": "u1", "first_name": "Ana"}]
    events = [{"external_id": "u1", "name": "order", "time": "2024-05-01T10:00:00Z"}]
    rsps.add(
        responses.POST,
        f"{BASE}/users/track",
        status=201,
        json={"message": "success", "attributes_processed": 1, "events_processed": 1},
        match=[
            matchers.json_params_matcher({"attributes": attributes, "events": events}),
            matchers.header_matcher(
                {
                    "X-Braze-Batch": "true",
                    "Content-Type": "application/json",
                    "Authorization": f"Bearer {KEY}",
                }
            ),
        ],
    )

    result = client.track(attributes=attributes, events=events)

    assert result == TrackResult(attributes_processed=1, events_processed=1, purchases_processed=0)
    assert used(limiter, "braze.users_track") == 1
    assert used(limiter, "braze.default") == 0


def test_track_parses_partial_errors_in_object_and_string_forms(
    rsps: responses.RequestsMock, client: BrazeClient
) -> None:
    rsps.add(
        responses.POST,
        f"{BASE}/users/track",
        status=201,
        json={
            "message": "success",
            "attributes_processed": 2,
            "errors": [
                {
                    "type": "'external_id' or 'braze_id' or 'user_alias' is required",
                    "input_array": "attributes",
                    "index": 1,
                },
                {"message": "Invalid email", "input_array": "attributes", "index": 0},
                "provided external_id is blacklisted and disallowed",
            ],
        },
    )

    result = client.track(attributes=[{"external_id": "a"}, {"first_name": "x"}])

    assert result.attributes_processed == 2
    assert result.errors == (
        TrackError("'external_id' or 'braze_id' or 'user_alias' is required", "attributes", 1),
        TrackError("Invalid email", "attributes", 0),
        TrackError("provided external_id is blacklisted and disallowed", None, None),
    )


def test_parse_track_errors_tolerates_odd_shapes() -> None:
    assert parse_track_errors(None) == ()
    assert parse_track_errors([{"index": True}]) == (TrackError('{"index":true}', None, None),)


def test_track_checks_batch_limits_before_sending(client: BrazeClient) -> None:
    with pytest.raises(ValueError, match="at most 75"):
        client.track(attributes=[{"external_id": str(i)} for i in range(76)])
    with pytest.raises(ValueError, match="at most 75"):
        client.track(purchases=[{"external_id": str(i)} for i in range(76)])
    big = "x" * (BODY_LIMIT_BYTES // 10)
    with pytest.raises(ValueError, match="4194304"):
        client.track(attributes=[{"external_id": str(i), "blob": big} for i in range(11)])


def test_track_with_nothing_to_send_makes_no_call(client: BrazeClient) -> None:
    assert client.track() == TrackResult(0, 0, 0)
    assert client.session.call_counts == {}


def test_track_with_events_is_not_replayed_after_a_5xx(
    rsps: responses.RequestsMock, client: BrazeClient
) -> None:
    rsps.add(responses.POST, f"{BASE}/users/track", status=500, json={"message": "Internal Server Error"})

    with pytest.raises(TransientApiError) as caught:
        client.track(events=[{"external_id": "u1", "name": "e", "time": "2024-01-01"}])

    assert len(rsps.calls) == 1
    assert "maybe_applied=true" in caught.value.detail


def test_track_with_attributes_only_is_retried_after_a_5xx(
    rsps: responses.RequestsMock, client: BrazeClient, clock: FakeClock
) -> None:
    rsps.add(responses.POST, f"{BASE}/users/track", status=503)
    rsps.add(responses.POST, f"{BASE}/users/track", status=201, json={"attributes_processed": 1})

    assert client.track(attributes=[{"external_id": "u1"}]).attributes_processed == 1
    assert len(clock.sleeps) == 1


def test_track_403_names_users_track(rsps: responses.RequestsMock, client: BrazeClient) -> None:
    rsps.add(responses.POST, f"{BASE}/users/track", status=403, json={"message": "Access Denied"})

    with pytest.raises(PermissionDenied) as caught:
        client.track(attributes=[{"external_id": "u1"}])

    assert "`users.track`" in caught.value.user_message
    assert "create a new key with `users.track`" in caught.value.fix


def test_track_401_points_at_the_key_and_instance(rsps: responses.RequestsMock, client: BrazeClient) -> None:
    rsps.add(responses.POST, f"{BASE}/users/track", status=401, json={"message": f"Invalid key {KEY}"})

    with pytest.raises(AuthError) as caught:
        client.track(attributes=[{"external_id": "u1"}])

    assert "BRAZE_API_KEY" in caught.value.fix
    assert "rest.fra-01.braze.eu" in caught.value.fix
    assert KEY not in str(caught.value)


def test_track_413_is_permanent(rsps: responses.RequestsMock, client: BrazeClient) -> None:
    rsps.add(responses.POST, f"{BASE}/users/track", status=413, body="Request Entity Too Large")

    with pytest.raises(PermanentApiError, match="too large"):
        client.track(attributes=[{"external_id": "u1"}])


def test_track_429_waits_for_the_epoch_reset(
    rsps: responses.RequestsMock, client: BrazeClient, clock: FakeClock
) -> None:
    headers = {
        "X-RateLimit-Limit": "3000",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(int(NOW_EPOCH) + 2),
    }
    rsps.add(responses.POST, f"{BASE}/users/track", status=429, json={"message": "rate"}, headers=headers)
    rsps.add(responses.POST, f"{BASE}/users/track", status=201, json={"events_processed": 1})

    result = client.track(events=[{"external_id": "u1", "name": "e", "time": "2024-01-01"}])

    assert result.events_processed == 1
    assert clock.sleeps == [2.05]


def test_track_429_for_good_raises_rate_limited(rsps: responses.RequestsMock, client: BrazeClient) -> None:
    rsps.add(
        responses.POST,
        f"{BASE}/users/track",
        status=429,
        headers={"X-RateLimit-Reset": str(int(NOW_EPOCH) + 1)},
    )

    with pytest.raises(RateLimited) as caught:
        client.track(attributes=[{"external_id": "u1"}])

    assert caught.value.retry_after == pytest.approx(1.05)
    assert len(rsps.calls) == 3


# ----------------------------------------------------------------- exports
def test_export_ids_sends_identifiers_and_parses_users(
    rsps: responses.RequestsMock, client: BrazeClient, limiter: RateLimiter
) -> None:
    user = {
        "external_id": "u1",
        "braze_id": "b1",
        "email": "a@x.io",
        "phone": "+33612345678",
        "first_name": "A",
    }
    rsps.add(
        responses.POST,
        f"{BASE}/users/export/ids",
        json={"message": "success", "users": [user], "invalid_user_ids": ["nobody"]},
        match=[
            matchers.json_params_matcher(
                {
                    "fields_to_export": ["external_id", "email"],
                    "external_ids": ["u1", "nobody"],
                    "user_aliases": [{"alias_name": "7", "alias_label": "brevo_contact_id"}],
                }
            )
        ],
    )

    result = client.export_ids(
        external_ids=["u1", "nobody"],
        user_aliases=[{"alias_name": "7", "alias_label": "brevo_contact_id"}],
        fields_to_export=["external_id", "email"],
    )

    assert result.users == (BrazeUser("u1", "b1", "a@x.io", "+33612345678", user),)
    assert result.invalid_user_ids == ("nobody",)
    assert used(limiter, "braze.export_ids") == 1


def test_export_ids_by_email_and_limits(rsps: responses.RequestsMock, client: BrazeClient) -> None:
    rsps.add(
        responses.POST,
        f"{BASE}/users/export/ids",
        json={"users": []},
        match=[matchers.json_params_matcher({"fields_to_export": ["email"], "email_address": "a@x.io"})],
    )

    assert client.export_ids(email="a@x.io", fields_to_export=["email"]).users == ()
    with pytest.raises(ValueError, match="at most 50"):
        client.export_ids(external_ids=[str(i) for i in range(51)], fields_to_export=["email"])
    with pytest.raises(ValueError, match="needs external_ids"):
        client.export_ids(fields_to_export=["email"])


def test_export_segment_asks_for_a_zip(rsps: responses.RequestsMock, client: BrazeClient) -> None:
    rsps.add(
        responses.POST,
        f"{BASE}/users/export/segment",
        json={"message": "success", "object_prefix": "pfx", "url": "https://s3.example/x.zip?sig=1"},
        match=[
            matchers.json_params_matcher(
                {
                    "segment_id": "seg-1",
                    "fields_to_export": ["external_id"],
                    "output_format": "zip",
                    "callback_endpoint": "https://hook.example/done",
                }
            )
        ],
    )

    job = client.export_segment(
        "seg-1", fields_to_export=["external_id"], callback_endpoint="https://hook.example/done"
    )

    assert job == SegmentExportJob("seg-1", "https://s3.example/x.zip?sig=1", "pfx")


def test_export_segment_403_names_its_permission(rsps: responses.RequestsMock, client: BrazeClient) -> None:
    rsps.add(responses.POST, f"{BASE}/users/export/segment", status=403, json={"message": "Access Denied"})

    with pytest.raises(PermissionDenied, match="users.export.segment"):
        client.export_segment("seg-1", fields_to_export=["external_id"])


# ----------------------------------------------------------------- segments, campaigns, canvases
def test_iter_segments_reads_pages_until_a_short_one(
    rsps: responses.RequestsMock, client: BrazeClient
) -> None:
    page0 = named("s", 0, 100)
    page1 = named("s", 100, 3)
    for page, items in ((0, page0), (1, page1)):
        rsps.add(
            responses.GET,
            f"{BASE}/segments/list",
            json={"message": "success", "segments": items},
            match=[matchers.query_param_matcher({"page": str(page), "sort_direction": "asc"})],
        )

    segments = list(client.iter_segments())

    assert len(segments) == 103
    assert segments[0] == Segment(id="s0", name="s 0", analytics_tracking_enabled=False, tags=("t",))
    assert segments[-1].id == "s102"


def test_iter_segments_stops_when_a_page_repeats(rsps: responses.RequestsMock, client: BrazeClient) -> None:
    same = named("s", 0, 100)
    rsps.add(responses.GET, f"{BASE}/segments/list", json={"segments": same})
    rsps.add(responses.GET, f"{BASE}/segments/list", json={"segments": same})

    assert [s.id for s in client.iter_segments()] == [s["id"] for s in same]
    assert len(rsps.calls) == 2


def test_segment_details_and_series(rsps: responses.RequestsMock, client: BrazeClient) -> None:
    rsps.add(
        responses.GET,
        f"{BASE}/segments/details",
        json={"message": "success", "name": "Engaged"},
        match=[matchers.query_param_matcher({"segment_id": "seg-1"})],
    )
    rsps.add(
        responses.GET,
        f"{BASE}/segments/data_series",
        json={"data": [{"time": "2024-05-01", "size": 10}]},
        match=[
            matchers.query_param_matcher({"segment_id": "seg-1", "length": "7", "ending_at": "2024-05-02"})
        ],
    )

    assert client.segment_details("seg-1")["name"] == "Engaged"
    assert client.segment_data_series("seg-1", length=7, ending_at="2024-05-02") == [
        {"time": "2024-05-01", "size": 10}
    ]
    with pytest.raises(ValueError, match="1..100"):
        client.segment_data_series("seg-1", length=101)


def test_iter_campaigns_filters_on_last_edit_and_parses(
    rsps: responses.RequestsMock, client: BrazeClient
) -> None:
    rsps.add(
        responses.GET,
        f"{BASE}/campaigns/list",
        json={
            "campaigns": [
                {
                    "id": "c1",
                    "name": "Spring",
                    "last_edited": "2024-05-01T10:00:00+00:00",
                    "is_api_campaign": True,
                }
            ]
        },
        match=[
            matchers.query_param_matcher(
                {
                    "page": "0",
                    "include_archived": "false",
                    "sort_direction": "asc",
                    "last_edit.time[gt]": "2024-01-01T00:00:00",
                }
            )
        ],
    )

    campaigns = list(client.iter_campaigns(edited_after="2024-01-01T00:00:00"))

    assert campaigns == [Campaign("c1", "Spring", "2024-05-01T10:00:00+00:00", True, ())]
    assert "last_edit.time%5Bgt%5D=2024-01-01T00%3A00%3A00" in str(rsps.calls[0].request.url)


def test_campaign_details_and_series_use_the_series_bucket(
    rsps: responses.RequestsMock, client: BrazeClient, limiter: RateLimiter
) -> None:
    rsps.add(responses.GET, f"{BASE}/campaigns/details", json={"name": "Spring", "channels": ["email"]})
    rsps.add(
        responses.GET,
        f"{BASE}/campaigns/data_series",
        json={"data": [{"time": "2024-05-01", "messages": {"email": [{"sent": 3}]}}]},
        match=[matchers.query_param_matcher({"campaign_id": "c1", "length": "100"})],
    )

    assert client.campaign_details("c1")["channels"] == ["email"]
    series = client.campaign_data_series("c1", length=100)

    assert series[0]["messages"]["email"][0]["sent"] == 3
    assert used(limiter, "braze.campaign_series") == 1
    assert used(limiter, "braze.default") == 1
    with pytest.raises(ValueError):
        client.campaign_data_series("c1", length=0)


def test_iter_canvases_and_canvas_series(rsps: responses.RequestsMock, client: BrazeClient) -> None:
    rsps.add(
        responses.GET,
        f"{BASE}/canvas/list",
        json={"canvases": [{"id": "cv1", "name": "Welcome", "last_edited": "2024-05-01", "tags": []}]},
        match=[
            matchers.query_param_matcher({"page": "0", "include_archived": "true", "sort_direction": "asc"})
        ],
    )
    rsps.add(responses.GET, f"{BASE}/canvas/details", json={"name": "Welcome", "steps": []})
    rsps.add(
        responses.GET,
        f"{BASE}/canvas/data_series",
        json={"data": {"name": "Welcome", "stats": [{"time": "2024-05-01"}]}, "message": "success"},
        match=[
            matchers.query_param_matcher(
                {
                    "canvas_id": "cv1",
                    "ending_at": "2024-05-14T00:00:00Z",
                    "length": "14",
                    "include_variant_breakdown": "true",
                    "include_step_breakdown": "true",
                }
            )
        ],
    )

    assert list(client.iter_canvases(include_archived=True)) == [Canvas("cv1", "Welcome", "2024-05-01", ())]
    assert client.canvas_details("cv1")["steps"] == []
    data = client.canvas_data_series("cv1", ending_at="2024-05-14T00:00:00Z", length=14)
    assert data == {"name": "Welcome", "stats": [{"time": "2024-05-01"}]}
    with pytest.raises(ValueError, match="1..14"):
        client.canvas_data_series("cv1", ending_at="2024-05-14", length=15)


def test_a_missing_campaign_is_a_permanent_404(rsps: responses.RequestsMock, client: BrazeClient) -> None:
    rsps.add(responses.GET, f"{BASE}/campaigns/details", status=404, json={"message": "Not found"})

    with pytest.raises(PermanentApiError) as caught:
        client.campaign_details("nope")

    assert caught.value.status == 404
    assert "`instance_url`" in caught.value.fix


def test_list_5xx_is_retried_then_raised(
    rsps: responses.RequestsMock, client: BrazeClient, clock: FakeClock
) -> None:
    rsps.add(responses.GET, f"{BASE}/segments/list", status=502)

    with pytest.raises(TransientApiError):
        list(client.iter_segments())

    assert len(rsps.calls) == 3
    assert len(clock.sleeps) == 2


# ----------------------------------------------------------------- email and subscriptions
def test_hard_bounces_and_unsubscribes_parse_addresses(
    rsps: responses.RequestsMock, client: BrazeClient
) -> None:
    rsps.add(
        responses.GET,
        f"{BASE}/email/hard_bounces",
        json={"emails": [{"email": "a@x.io", "hard_bounced_at": "2024-05-01T00:00:00Z"}]},
        match=[
            matchers.query_param_matcher(
                {"start_date": "2024-05-01", "end_date": "2024-05-02", "limit": "100", "offset": "0"}
            )
        ],
    )
    rsps.add(
        responses.GET,
        f"{BASE}/email/unsubscribes",
        json={"emails": [{"email": "b@x.io", "unsubscribed_at": "2024-05-01T01:00:00Z"}, {"nothing": 1}]},
    )

    assert client.hard_bounces(start_date="2024-05-01", end_date="2024-05-02") == [
        EmailAddressEvent("a@x.io", "2024-05-01T00:00:00Z")
    ]
    assert client.unsubscribes(start_date="2024-05-01", end_date="2024-05-02", limit=500) == [
        EmailAddressEvent("b@x.io", "2024-05-01T01:00:00Z")
    ]
    with pytest.raises(ValueError, match="1..500"):
        client.hard_bounces(start_date="2024-05-01", end_date="2024-05-02", limit=501)


def test_hard_bounces_403_names_its_permission(rsps: responses.RequestsMock, client: BrazeClient) -> None:
    rsps.add(responses.GET, f"{BASE}/email/hard_bounces", status=403)

    with pytest.raises(PermissionDenied, match="email.hard_bounces"):
        client.hard_bounces(start_date="2024-05-01", end_date="2024-05-02")


def test_iter_unsubscribes_pages_until_short(rsps: responses.RequestsMock, client: BrazeClient) -> None:
    full = [{"email": f"u{i}@x.io", "unsubscribed_at": None} for i in range(500)]
    rsps.add(
        responses.GET,
        f"{BASE}/email/unsubscribes",
        json={"emails": full},
        match=[
            matchers.query_param_matcher({"start_date": "a", "end_date": "b", "limit": "500", "offset": "0"})
        ],
    )
    rsps.add(
        responses.GET,
        f"{BASE}/email/unsubscribes",
        json={"emails": [{"email": "last@x.io"}]},
        match=[
            matchers.query_param_matcher(
                {"start_date": "a", "end_date": "b", "limit": "500", "offset": "500"}
            )
        ],
    )

    emails = [e.email for e in client.iter_unsubscribes("a", "b")]

    assert len(emails) == 501
    assert emails[-1] == "last@x.io"


def test_iter_hard_bounces_stops_when_a_page_repeats(
    rsps: responses.RequestsMock, client: BrazeClient
) -> None:
    full = [{"email": f"u{i}@x.io"} for i in range(500)]
    rsps.add(responses.GET, f"{BASE}/email/hard_bounces", json={"emails": full})
    rsps.add(responses.GET, f"{BASE}/email/hard_bounces", json={"emails": full})

    assert len(list(client.iter_hard_bounces("a", "b"))) == 500


def test_email_status_delete_and_subscription_writes(
    rsps: responses.RequestsMock, client: BrazeClient, limiter: RateLimiter
) -> None:
    rsps.add(
        responses.POST,
        f"{BASE}/email/status",
        json={"message": "success"},
        match=[matchers.json_params_matcher({"email": ["a@x.io"], "subscription_state": "unsubscribed"})],
    )
    rsps.add(
        responses.POST,
        f"{BASE}/users/delete",
        json={"deleted": 2},
        match=[matchers.json_params_matcher({"external_ids": ["u1", "u2"]})],
    )
    rsps.add(
        responses.POST,
        f"{BASE}/subscription/status/set",
        status=201,
        json={"message": "success"},
        match=[
            matchers.json_params_matcher(
                {
                    "subscription_group_id": "grp",
                    "subscription_state": "subscribed",
                    "external_id": ["u1"],
                    "email": ["a@x.io"],
                }
            )
        ],
    )

    client.email_status(["a@x.io"], "unsubscribed")
    assert client.delete_users(["u1", "u2"]) == 2
    client.subscription_status_set("grp", "subscribed", external_ids=["u1"], emails=["a@x.io"])

    assert used(limiter, "braze.user_lifecycle") == 1
    assert used(limiter, "braze.subscription") == 1
    assert used(limiter, "braze.default") == 1


def test_email_and_lifecycle_writes_check_their_limits(client: BrazeClient) -> None:
    with pytest.raises(ValueError, match="at most 50"):
        client.email_status([f"{i}@x.io" for i in range(51)], "subscribed")
    with pytest.raises(ValueError, match="state"):
        client.email_status(["a@x.io"], "maybe")
    with pytest.raises(ValueError, match="at most 50"):
        client.delete_users([str(i) for i in range(51)])
    with pytest.raises(ValueError, match="state"):
        client.subscription_status_set("g", "opted_in", emails=["a@x.io"])
    assert client.delete_users([]) == 0
    assert client.session.call_counts == {}


# ----------------------------------------------------------------- catalogs
def test_next_link_cursor_reads_the_next_relation_robustly() -> None:
    header = (
        '</catalogs/x/items?cursor=c2tpcDow>; rel="prev",'
        '</catalogs/x/items?cursor=c2tpcDoxMDA%3D>; rel="next"'
    )
    assert next_link_cursor(header) == "c2tpcDoxMDA="
    assert next_link_cursor("<https://h/catalogs/x/items?cursor=abc&x=1>;rel=next") == "abc"
    assert next_link_cursor('<https://h/x?cursor=p>; rel="prev"') is None
    assert next_link_cursor('<https://h/x?cursor=z>; title="a"; REL="prev next"') == "z"
    assert next_link_cursor(None) is None
    assert next_link_cursor("garbage") is None


def test_iter_catalog_items_follows_the_link_cursor(
    rsps: responses.RequestsMock, client: BrazeClient, limiter: RateLimiter
) -> None:
    rsps.add(
        responses.GET,
        f"{BASE}/catalogs/restaurants/items",
        json={"items": [{"id": "r1"}]},
        headers={"Link": '</catalogs/restaurants/items?cursor=CUR2>; rel="next"'},
        match=[matchers.query_param_matcher({})],
    )
    rsps.add(
        responses.GET,
        f"{BASE}/catalogs/restaurants/items",
        json={"items": [{"id": "r2"}]},
        headers={"Link": '</catalogs/restaurants/items?cursor=CUR1>; rel="prev"'},
        match=[matchers.query_param_matcher({"cursor": "CUR2"})],
    )

    pages = list(client.iter_catalog_items("restaurants"))

    assert pages == [([{"id": "r1"}], "CUR2"), ([{"id": "r2"}], None)]
    assert used(limiter, "braze.catalog_sync") == 2
    assert client.session.call_counts == {"GET /catalogs/{name}/items": 2}


def test_iter_catalog_items_stops_on_a_repeated_cursor(
    rsps: responses.RequestsMock, client: BrazeClient
) -> None:
    loop = {"Link": '</catalogs/c/items?cursor=SAME>; rel="next"'}
    rsps.add(
        responses.GET,
        f"{BASE}/catalogs/c/items",
        json={"items": [{"id": "1"}]},
        headers=loop,
        match=[matchers.query_param_matcher({"cursor": "SAME"})],
    )

    assert list(client.iter_catalog_items("c", cursor="SAME")) == [([{"id": "1"}], None)]


def test_iter_catalog_items_unknown_catalog_is_permanent(
    rsps: responses.RequestsMock, client: BrazeClient
) -> None:
    rsps.add(
        responses.GET,
        f"{BASE}/catalogs/nope/items",
        status=404,
        json={
            "errors": [{"id": "catalog-not-found", "message": "Could not find catalog"}],
            "message": "Invalid Request",
        },
    )

    with pytest.raises(PermanentApiError, match="catalog-not-found"):
        list(client.iter_catalog_items("nope"))
