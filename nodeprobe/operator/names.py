"""The operator's API names: group, plurals, the labels, annotations and finalizer it sets.

Plain constants, the one place they are spelled; everything else imports them from here.
"""

from __future__ import annotations

from nodeprobe.model import (
    NODE_REMEDIATIONS,
    REMEDIATION_GROUP,
    REMEDIATION_NODE_LABEL,
    REMEDIATION_VERSION,
)

GROUP = REMEDIATION_GROUP
VERSION = REMEDIATION_VERSION
API = f"/apis/{GROUP}/{VERSION}"
"""Path prefix of the operator's custom resources."""
POLICY_PLURAL = "remediationpolicies"
REMEDIATION_PLURAL = NODE_REMEDIATIONS
LABEL_NODE = REMEDIATION_NODE_LABEL
LABEL_POLICY = f"{GROUP}/policy"
LABEL_ESCALATED = f"{GROUP}/escalated"
"""Set on a node the ladder gave up on; removing it (or uncordoning) is how a person says fixed."""
LABEL_EXCLUDE = f"{GROUP}/exclude"
"""On a Node: nodeprobe starts no episode there (any value but "false")."""
ANNOTATION_PROTECT = f"{GROUP}/protect"
"""On a Pod: a drain leaves it in place unless the policy opts in (draino's protected pods)."""
ANNOTATION_CORDONED_BY = f"{GROUP}/cordoned-by"
"""On a Node nodeprobe cordoned: the NodeRemediation that did. Remove it to keep the cordon."""
FINALIZER = f"{GROUP}/live-episodes"
"""On a RemediationPolicy with live episodes: its deletion waits until they end."""
