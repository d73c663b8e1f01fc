"""A segment that is also the users segment is mirrored from the users sync's export, not a second one."""

from __future__ import annotations

from collections.abc import Callable

from tajo_braze.connector import BrazeConnector
from tajo_braze.sandbox import Sandbox


def test_users_and_segments_in_one_run_share_the_users_export(
    make_world: Callable[..., Sandbox], make_connector: Callable[..., BrazeConnector]
) -> None:
    sandbox = make_world()
    connector = make_connector(sandbox)
    connector.config = connector.config.with_overrides(mirror_segments=("All Users", "engaged_users"))
    connector.install()
    summary = connector.sync(resources=["users", "segments"])
    segments = next(r for r in summary["resources"] if r["resource"] == "segments")
    assert any("reused the users sync's export" in note for note in segments["notes"])
    # One export for the users segment (shared) and one for the other mirrored segment.
    assert sandbox.request_counts()["braze POST /users/export/segment"] == 2
    assert sandbox.violations() == []
