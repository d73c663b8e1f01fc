from __future__ import annotations

from pathlib import Path

from tajo_braze.state import StateStore
from tajo_braze.sync.users import EMAIL_CLAIMS, FINGERPRINTS, SMS_CLAIMS, SentRecord, remember_sent


def test_remember_sent_moves_claims_and_respects_other_owners(tmp_path: Path) -> None:
    with StateStore(tmp_path / "state.db") as state:
        state.put_fingerprints(FINGERPRINTS, [("ext:a", SentRecord("d0", "a@x.io", None, False).encode())])
        state.put_fingerprints(
            FINGERPRINTS, [("email:e@x.io", SentRecord("d9", "e@x.io", "+33600000009", False).encode())]
        )
        state.put_fingerprints(EMAIL_CLAIMS, [("a@x.io", "ext:a"), ("f@x.io", "braze:b-1")])
        state.put_fingerprints(SMS_CLAIMS, [("+33600000002", "ext:b")])
        recorded = remember_sent(
            state,
            [
                ("ext:a", SentRecord("d1", "a@x.io", "+33600000001", False)),  # a phone carried to Braze
                ("ext:c", SentRecord("d2", "c@x.io", "+33600000002", False)),  # that phone is b's
                ("email:d@x.io", SentRecord("d3", "d@x.io", None, False)),  # a profile just created
                ("email:e@x.io", SentRecord("d4", "e@x.io", None, False)),  # its phone moved: not ours to say
                ("email:f@x.io", SentRecord("d5", "f@x.io", None, False)),  # another profile's email
            ],
        )
        assert recorded == ["ext:a", "email:d@x.io"]
        assert SentRecord.decode(state.get_fingerprints(FINGERPRINTS, ["ext:a"])["ext:a"]).digest == "d1"
        assert state.get_fingerprints(SMS_CLAIMS, ["+33600000001", "+33600000002"]) == {
            "+33600000001": "ext:a",
            "+33600000002": "ext:b",
        }
        assert state.get_fingerprints(FINGERPRINTS, ["ext:c"]) == {}
        assert SentRecord.decode(state.get_fingerprints(FINGERPRINTS, ["email:e@x.io"])["email:e@x.io"]).digest == "d9"
        # The new profile's fingerprint is set without a claim: the users half claims it for the
        # Braze profile id it reads in the export, which this side does not know.
        assert SentRecord.decode(state.get_fingerprints(FINGERPRINTS, ["email:d@x.io"])["email:d@x.io"]).digest == "d3"
        assert state.get_fingerprints(EMAIL_CLAIMS, ["d@x.io", "f@x.io"]) == {"f@x.io": "braze:b-1"}
