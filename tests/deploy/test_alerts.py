"""Readiness leaves the broker out, so its outage is an alert: the PrometheusRule renders in
every overlay (its schema is checked with the other objects, tests/deploy/test_kubernetes.py)
and alerts on the gauge the services export."""

from __future__ import annotations

import jsonschema
import pytest

from shared.service import BROKER_UP
from tests.deploy.support import CRD_SCHEMAS, OVERLAYS, of_kind, render

pytestmark = pytest.mark.parametrize("overlay", OVERLAYS)

RULE_SCHEMA = CRD_SCHEMAS[("monitoring.coreos.com/v1", "PrometheusRule")]


def test_broker_outages_alert_on_the_gauge_the_services_export(overlay: str) -> None:
    (rules,) = of_kind(render(overlay), "PrometheusRule")
    alerts = {rule["alert"]: rule for group in rules["spec"]["groups"]
              for rule in group["rules"] if "alert" in rule}
    broker = alerts["CyberclaimsBrokerUnreachable"]
    [gauge] = BROKER_UP.describe()
    assert f"({gauge.name}) == 0" in broker["expr"]
    assert broker["for"] == "2m"
    assert broker["labels"]["severity"] == "critical"
    assert "outbox" in broker["annotations"]["description"]


def test_the_rule_schema_refuses_what_the_operator_would(overlay: str) -> None:
    (rules,) = of_kind(render(overlay), "PrometheusRule")
    rule = rules["spec"]["groups"][0]["rules"][0]
    for broken in ({**rule, "for": "two minutes"}, {**rule, "severity": "critical"},
                   {key: value for key, value in rule.items() if key != "expr"}):
        manifest = {**rules, "spec": {"groups": [{"name": "g", "rules": [broken]}]}}
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(manifest, RULE_SCHEMA)
