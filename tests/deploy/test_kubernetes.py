"""The kustomize overlays render, every object meets the Kubernetes schemas (offline, strict),
and the deployment rules of the platform hold in every overlay."""

from __future__ import annotations

import asyncio
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from bench.system import millicores
from services.notify.targets import RefusedTarget, TargetPolicy
from shared.service import SHUTDOWN_TIMEOUT_SECONDS
from shared.settings import Environment
from shared.topics import CATALOG
from tests.deploy.support import (
    CRD_SCHEMAS,
    KUBERNETES_VERSION,
    LISTEN_ALL,
    OVERLAYS,
    SERVICES,
    Manifest,
    named,
    of_kind,
    render,
    selects,
    service_deployments,
)

pytestmark = pytest.mark.parametrize("overlay", OVERLAYS)


def test_every_object_validates(overlay: str) -> None:
    manifests = render(overlay)
    assert manifests
    for manifest in manifests:
        crd_schema = CRD_SCHEMAS.get((manifest["apiVersion"], manifest["kind"]))
        if crd_schema is not None:
            jsonschema.validate(manifest, crd_schema)
            continue
        # Raises SchemaNotFoundError for a kind the schemas lack: every other kind must be core.
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_the_validator_refuses_an_unknown_field(overlay: str) -> None:
    deployment = service_deployments(render(overlay))["intake"]
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def _without(mapping: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if k != key}


def test_the_scaled_object_schema_refuses_what_keda_would(overlay: str) -> None:
    scaled = named(render(overlay), "ScaledObject", "triage")
    schema = CRD_SCHEMAS[("keda.sh/v1alpha1", "ScaledObject")]
    jsonschema.validate(scaled, schema)
    (trigger,) = scaled["spec"]["triggers"]
    metadata = trigger["metadata"]
    broken = [
        {**scaled, "spec": {**scaled["spec"], "maxReplicas": 6}},  # the HPA's name, not KEDA's
        {**scaled, "spec": {**scaled["spec"], "triggers": [
            {**trigger, "metadata": {**metadata, "lagThreshold": 100}}]}},  # strings only
        {**scaled, "spec": {**scaled["spec"], "triggers": [
            {**trigger, "metadata": _without(metadata, "consumerGroup")}]}},
        {**scaled, "spec": _without(scaled["spec"], "scaleTargetRef")},
    ]
    for manifest in broken:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(manifest, schema)


def test_per_service_objects_exist(overlay: str) -> None:
    manifests = render(overlay)
    assert set(service_deployments(manifests)) == set(SERVICES)
    for name in SERVICES:
        named(manifests, "Service", name)
        named(manifests, "ScaledObject", name)
        named(manifests, "PodDisruptionBudget", name)
        named(manifests, "NetworkPolicy", name)
        assert any(c["metadata"]["name"].startswith(f"{name}-config-")
                   for c in of_kind(manifests, "ConfigMap"))
    # KEDA owns the autoscalers (one per ScaledObject), and the pods migrate themselves.
    assert not of_kind(manifests, "HorizontalPodAutoscaler")
    assert not of_kind(manifests, "Job")


def _containers(manifest: Manifest) -> list[dict[str, Any]]:
    containers: list[dict[str, Any]] = manifest["spec"]["template"]["spec"]["containers"]
    return containers


def _all_containers(manifest: Manifest) -> list[dict[str, Any]]:
    pod = manifest["spec"]["template"]["spec"]
    return [*pod.get("initContainers", ()), *pod["containers"]]


def _locked_down(pod: dict[str, Any], container: dict[str, Any]) -> None:
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    resources = container["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[kind]), kind


def test_every_workload_is_locked_down_and_sized(overlay: str) -> None:
    manifests = render(overlay)
    for workload in of_kind(manifests, "Deployment"):
        for container in _all_containers(workload):
            _locked_down(workload["spec"]["template"]["spec"], container)


def test_every_deployment_has_probes_and_topology_spread(overlay: str) -> None:
    for deployment in of_kind(render(overlay), "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["topologySpreadConstraints"]
        for container in pod["containers"]:
            assert "livenessProbe" in container and "readinessProbe" in container


def test_services_probe_healthz_and_readyz_on_their_port(overlay: str) -> None:
    manifests = render(overlay)
    for name, deployment in service_deployments(manifests).items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["args"] == ["serve", name]
        assert container["ports"] == [{"name": "http", "containerPort": SERVICES[name],
                                       "protocol": "TCP"}]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        keys = {c["topologyKey"] for c in pod["topologySpreadConstraints"]}
        assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
        for constraint in pod["topologySpreadConstraints"]:
            assert selects(constraint["labelSelector"], pod_labels(deployment))
        service = named(manifests, "Service", name)
        assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(deployment))
        assert service["spec"]["ports"][0]["port"] == SERVICES[name]


def pod_labels(workload: Manifest) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", ())}


def _config(manifests: list[Manifest], container: dict[str, Any]) -> dict[str, str]:
    """The variables a container gets from its ConfigMaps."""
    values: dict[str, str] = {}
    for source in container.get("envFrom", ()):
        values.update(named(manifests, "ConfigMap", source["configMapRef"]["name"])["data"])
    return values


OVERLAY_ENV = {"dev": Environment.development, "prod": Environment.production}
KAFKA_CLUSTER = {"dev": "cyberclaims-dev", "prod": "cyberclaims"}


def test_services_are_configured_for_their_environment_and_kafka(overlay: str) -> None:
    manifests = render(overlay)
    for name, deployment in service_deployments(manifests).items():
        (container,) = _containers(deployment)
        config = _config(manifests, container)
        prefix = name.upper()
        assert config["CYBERCLAIMS_ENV"] == OVERLAY_ENV[overlay]
        assert config["CYBERCLAIMS_KAFKA_BOOTSTRAP"] == \
            f"{KAFKA_CLUSTER[overlay]}-kafka-bootstrap.kafka.svc:9092"
        assert config["CYBERCLAIMS_KAFKA_IDEMPOTENT_PRODUCER"] == "true"
        assert config["CYBERCLAIMS_KAFKA_CREATE_TOPICS"] == "false"
        assert config["CYBERCLAIMS_KAFKA_BOOTSTRAP"]
        assert config[f"{prefix}_HOST"] == LISTEN_ALL
        assert config[f"{prefix}_PORT"] == str(SERVICES[name])
        env = _env(container)
        assert env[f"{prefix}_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == f"{name}-database"
        assert f"{prefix}_DATABASE_URL" not in config
        # Tokens: the provider's public keys over HTTPS, one audience per service, no secret.
        assert config["CYBERCLAIMS_JWKS_URL"].startswith("https://")
        assert config["CYBERCLAIMS_JWT_ISSUER"]
        assert config[f"{prefix}_AUDIENCE"] == f"cyberclaims-{name}"
        # Per-address limits see the client behind the ingress, not the ingress's address.
        assert config["FORWARDED_ALLOW_IPS"] == "*"
        assert not any("JWT_SECRET" in variable for variable in [*env, *config])


def test_the_dev_overlay_uses_a_kafka_cluster_of_its_own(overlay: str) -> None:
    """Topics, the services' egress and KEDA's lag all name the overlay's Strimzi cluster:
    nothing of the dev cluster can reach production's topics."""
    manifests = render(overlay)
    cluster = KAFKA_CLUSTER[overlay]
    for topic in of_kind(manifests, "KafkaTopic"):
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == cluster
    named_clusters = {peer["podSelector"]["matchLabels"]["strimzi.io/cluster"]
                      for policy in of_kind(manifests, "NetworkPolicy")
                      for rule in policy["spec"].get("egress", ())
                      for peer in rule.get("to", ())
                      if "strimzi.io/cluster" in peer.get("podSelector", {}).get("matchLabels", {})}
    assert named_clusters == {cluster}
    for scaled in of_kind(manifests, "ScaledObject"):
        (kafka,) = [t for t in scaled["spec"]["triggers"] if t["type"] == "kafka"]
        assert kafka["metadata"]["bootstrapServers"] == f"{cluster}-kafka-bootstrap.kafka.svc:9092"


def test_every_pod_migrates_its_database_before_the_service_starts(overlay: str) -> None:
    """An init container, so a plain `kubectl apply -k` never starts new code on an old schema
    (concurrent runs take turns: tests/deploy/test_concurrent_migrations.py)."""
    manifests = render(overlay)
    for name, deployment in service_deployments(manifests).items():
        pod = deployment["spec"]["template"]["spec"]
        (migrate,) = pod["initContainers"]
        (service,) = pod["containers"]
        assert migrate["args"] == ["migrate", name]
        assert migrate["image"] == service["image"]
        assert set(_env(migrate)) == {f"{name.upper()}_DATABASE_URL"}
        assert _env(migrate)[f"{name.upper()}_DATABASE_URL"] == \
            _env(service)[f"{name.upper()}_DATABASE_URL"]
        assert "envFrom" not in migrate, "the migration needs its database and nothing else"


def test_rollouts_drop_no_requests(overlay: str) -> None:
    """A pod keeps serving while its removal from the endpoints spreads (preStop), and the
    grace period covers that wait and the service's own shutdown."""
    for deployment in service_deployments(render(overlay)).values():
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        command = container["lifecycle"]["preStop"]["exec"]["command"]
        assert command[0] == "sleep" and int(command[1]) >= 5
        assert pod["terminationGracePeriodSeconds"] > int(command[1]) + SHUTDOWN_TIMEOUT_SECONDS


def test_no_secret_values_are_rendered(overlay: str) -> None:
    manifests = render(overlay)
    for secret in of_kind(manifests, "Secret"):
        assert not secret.get("data") and not secret.get("stringData"), secret["metadata"]["name"]
    for config_map in of_kind(manifests, "ConfigMap"):
        for key in config_map.get("data", {}):
            assert not any(word in key for word in ("SECRET", "PASSWORD", "DATABASE_URL")), key


def test_one_image_pinned_by_the_overlay(overlay: str) -> None:
    containers = [container for workload in of_kind(render(overlay), "Deployment")
                  for container in _all_containers(workload)]
    images = {container["image"] for container in containers}
    assert len(images) == 1
    (image,) = images
    name, _, tag = image.rpartition(":")
    assert name and "/" in name and tag and tag != "latest"
    policies = {container.get("imagePullPolicy") for container in containers}
    if overlay == "prod":
        assert tag[0].isdigit(), "production runs a released version"
        assert policies == {None}, "a release tag never moves: pulled once per node"
    else:
        assert policies == {"Always"}, "the dev tag moves: every new pod pulls it again"


def test_consumers_scale_on_their_groups_lag(overlay: str) -> None:
    """Each service's ScaledObject scales its Deployment on the lag of its own consumer group
    (`cyberclaims-<service>`, shared/service.py); only intake, the front door, on CPU too."""
    manifests = render(overlay)
    for name in SERVICES:
        scaled = named(manifests, "ScaledObject", name)
        assert scaled["spec"]["scaleTargetRef"]["name"] == name
        assert scaled["spec"]["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
        triggers = {trigger["type"]: trigger for trigger in scaled["spec"]["triggers"]}
        assert set(triggers) == ({"kafka", "cpu"} if name == "intake" else {"kafka"})
        kafka = triggers["kafka"]["metadata"]
        assert kafka["consumerGroup"] == f"cyberclaims-{name}"
        assert "topic" not in kafka, "the lag of every topic the group consumes"
        assert kafka["allowIdleConsumers"] == "false"
        scale_down = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"][
            "scaleDown"]
        assert scale_down["stabilizationWindowSeconds"] >= 300, "no rebalancing back and forth"


def test_consumers_never_outnumber_partitions(overlay: str) -> None:
    """One consumer group per service: replicas beyond the partitions would sit idle."""
    manifests = render(overlay)
    partitions = min(topic.partitions for topic in CATALOG)
    for name, deployment in service_deployments(manifests).items():
        scaled = named(manifests, "ScaledObject", name)["spec"]
        assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"] <= partitions
        assert deployment["spec"].get("replicas", 1) <= partitions
    topics = {t["spec"]["topicName"]: t for t in of_kind(manifests, "KafkaTopic")}
    for topic in CATALOG:
        assert topics[topic.name]["spec"]["partitions"] >= max(
            s["spec"]["maxReplicaCount"] for s in of_kind(manifests, "ScaledObject"))


def test_replica_counts_per_overlay(overlay: str) -> None:
    for scaled in of_kind(render(overlay), "ScaledObject"):
        bounds = (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"])
        assert bounds == {"dev": (1, 1), "prod": (3, 6)}[overlay]


def test_disruption_budgets_select_their_service(overlay: str) -> None:
    manifests = render(overlay)
    for name, deployment in service_deployments(manifests).items():
        pdb = named(manifests, "PodDisruptionBudget", name)
        assert selects(pdb["spec"]["selector"], pod_labels(deployment))
        assert pdb["spec"]["maxUnavailable"] == 1


def _policies(manifests: list[Manifest], labels: dict[str, str]) -> list[Manifest]:
    return [p for p in of_kind(manifests, "NetworkPolicy")
            if selects(p["spec"]["podSelector"], labels)]


def _egress_ports(policies: list[Manifest]) -> set[int]:
    return {port["port"] for policy in policies for rule in policy["spec"].get("egress", ())
            for port in rule.get("ports", ())}


def _internet_ports(policies: list[Manifest]) -> set[int]:
    """Ports open to addresses outside the cluster (an ipBlock peer)."""
    return {port["port"] for policy in policies for rule in policy["spec"].get("egress", ())
            if any("ipBlock" in peer for peer in rule.get("to", ()))
            for port in rule.get("ports", ())}


def test_network_policies_deny_by_default(overlay: str) -> None:
    manifests = render(overlay)
    deny = named(manifests, "NetworkPolicy", "default-deny")
    assert deny["spec"]["podSelector"] == {}
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
    for policy in of_kind(manifests, "NetworkPolicy"):
        for rule in [*policy["spec"].get("egress", ()), *policy["spec"].get("ingress", ())]:
            assert rule.get("ports") and (rule.get("to") or rule.get("from")), \
                f"{policy['metadata']['name']}: an egress or ingress rule open to everything"


def test_each_service_reaches_only_what_it_must(overlay: str) -> None:
    manifests = render(overlay)
    for name, deployment in service_deployments(manifests).items():
        policies = _policies(manifests, pod_labels(deployment))
        ports = _egress_ports(policies)
        assert {53, 5432, 9092} <= ports, name
        internet = _internet_ports(policies)
        expected_internet = {443} | {  # 443: the identity provider's JWKS, and payments
            "notify": _webhook_ports(OVERLAY_ENV[overlay]) | {587}}.get(name, set())
        assert internet == expected_internet, name
        expected = {53, 5432, 9092} | expected_internet
        if overlay == "dev":
            expected |= {"payout": {8010}, "notify": {1025}}.get(name, set())
        assert ports == expected, name
        for policy in policies:
            for rule in policy["spec"].get("egress", ()):
                for peer in rule.get("to", ()):
                    if "ipBlock" in peer:
                        assert {"10.0.0.0/8", "169.254.0.0/16"} <= set(peer["ipBlock"]["except"])
        ingress = [rule for p in policies for rule in p["spec"].get("ingress", ())]
        assert ingress, name
        sources = {peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                   for rule in ingress for peer in rule["from"]}
        assert sources == {"ingress-nginx", "monitoring"}
        assert {port["port"] for rule in ingress for port in rule["ports"]} == {SERVICES[name]}


def _webhook_ports(env: Environment) -> set[int]:
    """The ports notify's subscription rules let a webhook use under `env`: 443, and 80 where a
    plain http URL is accepted (https is required outside development and tests, as
    services/notify/app.py sets it). A literal address is checked, never looked up or called."""
    targets = TargetPolicy((), require_https=env not in (Environment.development, Environment.test),
                           lookups=1)
    ports = set()
    try:
        for url in ("https://8.8.8.8/hook", "http://8.8.8.8/hook"):
            try:
                ports.add(asyncio.run(targets.resolve(url)).port)
            except RefusedTarget:
                continue
    finally:
        targets.close()
    return ports


def test_the_service_monitor_scrapes_every_service(overlay: str) -> None:
    manifests = render(overlay)
    (monitor,) = of_kind(manifests, "ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    # /metrics answers operators only: Prometheus sends an operator token from a secret.
    assert endpoint["authorization"] == {
        "type": "Bearer", "credentials": {"name": "cyberclaims-metrics", "key": "token"}}
    scraped = {s["metadata"]["name"] for s in of_kind(manifests, "Service")
               if selects(monitor["spec"]["selector"], s["metadata"]["labels"])}
    assert scraped == set(SERVICES)
    for name in SERVICES:
        assert named(manifests, "Service", name)["spec"]["ports"][0]["name"] == "http"


def test_everything_lands_in_one_restricted_namespace(overlay: str) -> None:
    manifests = render(overlay)
    (namespace,) = of_kind(manifests, "Namespace")
    name = namespace["metadata"]["name"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for manifest in manifests:
        if manifest["kind"] != "Namespace":
            assert manifest["metadata"]["namespace"] == name, manifest["metadata"]["name"]


def test_the_dispatch_path_weighs_five_times_the_rest(overlay: str) -> None:
    """Intake and triage request five times the CPU of payout, notify and risk: the CPU weight
    under contention that `bench/` gives the services too (`bench.system.niceness_as_deployed`)."""
    requests = {name: millicores(_containers(deployment)[0]["resources"]["requests"]["cpu"])
                for name, deployment in service_deployments(render(overlay)).items()}
    assert set(requests) == {"intake", "triage", "payout", "notify", "risk", "insights"}
    assert requests["intake"] == requests["triage"]
    assert requests["payout"] == requests["notify"] == requests["risk"] == requests["insights"]
    assert requests["intake"] == 5 * requests["notify"]
