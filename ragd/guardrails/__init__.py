"""Input, retrieved-context and output guards on guardrails-ai, with a trained injection classifier.

Light names are re-exported here; the service (:mod:`ragd.guardrails.service`), the chains and the
guardrails-ai validators are imported from their modules, so importing this package stays cheap.
"""

from ragd.guardrails.base import Action, Guard, GuardDecision, Stage
from ragd.guardrails.injection_rules import match_rules
from ragd.guardrails.pii import PIIMatch, find_pii, redact
from ragd.guardrails.policy import GuardPolicy, GuardRule

__all__ = [
    "Action",
    "Guard",
    "GuardDecision",
    "GuardPolicy",
    "GuardRule",
    "PIIMatch",
    "Stage",
    "find_pii",
    "match_rules",
    "redact",
]
