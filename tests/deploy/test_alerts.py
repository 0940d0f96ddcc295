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


def test_a_consumer_group_with_work_that_consumes_nothing_alerts(overlay: str) -> None:
    """A consumer can stand still while its process looks healthy (docs/reliability.md):
    readiness does not see it, so an alert on the exporter's lag and committed offsets does,
    for every service's group (`cyberclaims-<service>`, `shared.service`)."""
    (rules,) = of_kind(render(overlay), "PrometheusRule")
    alerts = {rule["alert"]: rule for group in rules["spec"]["groups"]
              for rule in group["rules"] if "alert" in rule}
    stalled = alerts["CyberclaimsConsumerStalled"]
    assert 'kafka_consumergroup_lag{consumergroup=~"cyberclaims-.*"}) > 0' in stalled["expr"]
    assert 'changes(kafka_consumergroup_current_offset{consumergroup=~"cyberclaims-.*"}[5m]))' \
           ' == 0' in " ".join(stalled["expr"].split())
    assert stalled["for"] == "5m"
    assert stalled["labels"]["severity"] == "critical"
