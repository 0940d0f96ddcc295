"""The security controls a risk assessment checks, and the attack vectors they guard against.

Shared because three services read the same map: triage takes a completion report's attack
vector from this vocabulary, risk plans remediation per control, and payout asks whether the
vector of an incident went through a control the policyholder had been told to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class Control(StrEnum):
    mfa_remote_access = "mfa_remote_access"
    offline_backups_tested = "offline_backups_tested"
    mfa_email = "mfa_email"
    edr_on_endpoints = "edr_on_endpoints"
    critical_patches_within_14_days = "critical_patches_within_14_days"
    no_exposed_rdp_or_smb = "no_exposed_rdp_or_smb"
    privileged_access_separated = "privileged_access_separated"
    email_authentication_dmarc = "email_authentication_dmarc"
    central_logging_90_days = "central_logging_90_days"
    incident_response_plan_tested = "incident_response_plan_tested"
    security_awareness_training = "security_awareness_training"


class AttackVector(StrEnum):
    """How the attacker got in, after VERIS action vectors; `other` comes with a detail."""

    email_phishing = "email_phishing"
    remote_desktop = "remote_desktop"
    vpn = "vpn"
    web_application = "web_application"
    vulnerability_exploit = "vulnerability_exploit"
    stolen_credentials = "stolen_credentials"
    supply_chain = "supply_chain"
    removable_media = "removable_media"
    insider_access = "insider_access"
    other = "other"


GUARDING_CONTROLS: Mapping[AttackVector, frozenset[Control]] = {
    AttackVector.email_phishing: frozenset({
        Control.mfa_email, Control.email_authentication_dmarc,
        Control.security_awareness_training, Control.edr_on_endpoints}),
    AttackVector.remote_desktop: frozenset({
        Control.no_exposed_rdp_or_smb, Control.mfa_remote_access}),
    AttackVector.vpn: frozenset({
        Control.mfa_remote_access, Control.critical_patches_within_14_days}),
    AttackVector.web_application: frozenset({
        Control.critical_patches_within_14_days, Control.central_logging_90_days}),
    AttackVector.vulnerability_exploit: frozenset({
        Control.critical_patches_within_14_days, Control.no_exposed_rdp_or_smb,
        Control.edr_on_endpoints}),
    AttackVector.stolen_credentials: frozenset({
        Control.mfa_remote_access, Control.mfa_email, Control.privileged_access_separated}),
    AttackVector.supply_chain: frozenset({
        Control.edr_on_endpoints, Control.central_logging_90_days}),
    AttackVector.removable_media: frozenset({
        Control.edr_on_endpoints, Control.security_awareness_training}),
    AttackVector.insider_access: frozenset({
        Control.privileged_access_separated, Control.central_logging_90_days}),
    AttackVector.other: frozenset(),
}
"""Which controls guard against each attack vector (every vector has an entry)."""
