"""The confidence analyzer: how far an answer can be trusted, and what to do with it.

Pure: no I/O. `decide` gives a `Decision` (action, machine-readable reason, the assessment
with every signal, the cut-offs, the customer's text) that encodes to JSON for an event.
Signals, weights, thresholds and rules: architecture/decisions/0010-confidence.md.
"""

from metachat.orchestrator.confidence.analyzer import Assessment, Level, analyze
from metachat.orchestrator.confidence.markers import strip_marker
from metachat.orchestrator.confidence.policy import SEVERITY, Action, Decision, Reason, decide
from metachat.orchestrator.confidence.presets import (
    PRESETS,
    ConfidenceSettings,
    Cutoffs,
    Domain,
    Mode,
    Preset,
    Strategy,
)
from metachat.orchestrator.confidence.prompts import instructions
from metachat.orchestrator.confidence.questions import customer_asks_for_human
from metachat.orchestrator.confidence.signals import Signal, SignalName

__all__ = [
    "PRESETS",
    "SEVERITY",
    "Action",
    "Assessment",
    "ConfidenceSettings",
    "Cutoffs",
    "Decision",
    "Domain",
    "Level",
    "Mode",
    "Preset",
    "Reason",
    "Signal",
    "SignalName",
    "Strategy",
    "analyze",
    "customer_asks_for_human",
    "decide",
    "instructions",
    "strip_marker",
]
