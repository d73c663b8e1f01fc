from __future__ import annotations

import json

import responses

from tajo_braze.clients.braze import BRAZE_BUCKETS, BrazeClient
from tajo_braze.http import ApiSession
from tajo_braze.jsonbytes import dumps
from tajo_braze.models import ContactPayload
from tajo_braze.ratelimit import RateLimiter
from tajo_braze.sync.users import payload_digest

HUGE = 2**70


def test_integers_beyond_64_bits_are_written_not_refused() -> None:
    assert json.loads(dumps({"n": HUGE, "s": "é"})) == {"n": HUGE, "s": "é"}
    assert dumps({"b": 1, "a": 2}, sort_keys=True) == b'{"a":2,"b":1}'


def test_a_contact_with_a_huge_number_has_a_stable_digest() -> None:
    payload = ContactPayload("ext:u", "u@x.io", "u", {"LOYALTY_POINTS": HUGE})
    assert payload_digest(payload) == payload_digest(payload)


@responses.activate
def test_a_track_call_with_a_huge_property_is_sent() -> None:
    responses.post("https://rest.iad-01.braze.com/users/track", json={"message": "success", "events_processed": 1},
                   status=201)
    session = ApiSession(api="braze", base_url="https://rest.iad-01.braze.com",
                         auth_headers={"Authorization": "Bearer k-000"}, limiter=RateLimiter(BRAZE_BUCKETS))
    result = BrazeClient(session).track(
        events=[{"external_id": "u", "name": "e", "time": "2024-01-01T00:00:00Z", "properties": {"n": HUGE}}]
    )
    assert result.events_processed == 1
    assert json.loads(responses.calls[0].request.body)["events"][0]["properties"]["n"] == HUGE
