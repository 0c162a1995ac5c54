"""The CRDs agree with the code: phases, printer columns, plurals, and defaults that parse."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

from nodeprobe.model import RemediationPhase
from nodeprobe.operator import CRD_DIR
from nodeprobe.operator.names import GROUP, POLICY_PLURAL, REMEDIATION_PLURAL, VERSION


def crd(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((CRD_DIR / name).read_text())
    return doc


def test_both_crds_are_cluster_scoped_v1alpha1() -> None:
    for file, plural in (("remediationpolicy.yaml", POLICY_PLURAL),
                         ("noderemediation.yaml", REMEDIATION_PLURAL)):
        doc = crd(file)
        assert doc["apiVersion"] == "apiextensions.k8s.io/v1"
        assert doc["metadata"]["name"] == f"{plural}.{GROUP}"
        assert doc["spec"]["scope"] == "Cluster"
        assert doc["spec"]["names"]["plural"] == plural
        version = doc["spec"]["versions"][0]
        assert version["name"] == VERSION and version["subresources"] == {"status": {}}


def test_noderemediation_columns_and_phases() -> None:
    version = crd("noderemediation.yaml")["spec"]["versions"][0]
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Node"] == ".spec.nodeName" and columns["Policy"] == ".spec.policy"
    assert columns["Rung"] == ".status.rung" and columns["Phase"] == ".status.phase"
    assert columns["Age"] == ".metadata.creationTimestamp"
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert status["phase"]["enum"] == [p.value for p in RemediationPhase]
    for key in ("bootIDBefore", "bootIDAfter", "cordonedByUs", "goroutineDumpPath", "messages"):
        assert key in status


def test_policy_schema_names_every_field_the_parser_reads() -> None:
    props = crd("remediationpolicy.yaml")["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
        "properties"]["spec"]["properties"]
    for key in ("nodeSelector", "triggers", "ladder", "maxConcurrent", "minHealthy", "coolDown",
                "rate", "settleWindow", "drain", "escalation", "dryRun", "paused"):
        assert key in props, key
    assert props["drain"]["properties"]["onTimeout"]["enum"] == ["next", "fail"]


def _objects(schema: dict[str, Any], at: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every object schema with properties under `schema`, by its path."""
    if schema.get("type") == "object" and "properties" in schema:
        yield at, schema
    for key, sub in (schema.get("properties") or {}).items():
        yield from _objects(sub, f"{at}.{key}")
    if isinstance(schema.get("items"), dict):
        yield from _objects(schema["items"], f"{at}[]")


def test_every_policy_object_keeps_the_fields_it_does_not_know() -> None:
    """issue 18 item 8: a pruned typo (`drain: {timout: 1s}`) would leave the policy live
    without it; kept, the operator's parser refuses it. A selector's expressions are
    Kubernetes' own type, and a typo there cannot widen one: a misspelt key or operator is a
    required field missing (the schema refuses it), a misspelt `values` leaves In/NotIn with
    none (the parser refuses it)."""
    spec = crd("remediationpolicy.yaml")["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
        "properties"]["spec"]
    pruning = [at for at, obj in _objects(spec, "spec")
               if not obj.get("x-kubernetes-preserve-unknown-fields")]
    assert pruning == ["spec.nodeSelector.matchExpressions[]"]
