"""What a consumer's batch loader reads of the events: the ids they name."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from shared.consumer import ids_in
from shared.events import Envelope, RegulatorReportFiled


def _envelope(data: dict[str, object]) -> Envelope:
    event = RegulatorReportFiled(incident_id=uuid.uuid4(), org_id="org-1",
                                 reported_at=datetime.now(UTC), reference="CAC-1")
    envelope = Envelope.wrap(event, source="/test", time=datetime.now(UTC))
    return envelope.model_copy(update={"data": data})


def test_the_ids_named_are_read_and_a_malformed_one_is_left_to_its_handler() -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    envelopes = [_envelope({"incident_id": str(first)}), _envelope({"incident_id": str(first)}),
                 _envelope({"incident_id": str(second), "claim_id": str(first)}),
                 _envelope({"incident_id": "not-an-id"}), _envelope({"incident_id": 7}),
                 _envelope({"incident_id": None}), _envelope({"policy_number": "POL-1"})]
    assert ids_in(envelopes, "incident_id") == {first, second}
    assert ids_in(envelopes, "claim_id") == {first}
    assert ids_in([], "incident_id") == set()
