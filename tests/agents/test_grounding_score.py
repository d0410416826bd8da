"""The grounding score that chat hands to monitoring comes from the output grounding guard."""

from ragd.agents.chat_service import grounding_score


def test_grounding_score_is_taken_from_the_grounding_decision() -> None:
    decisions = [
        {"guard": "injection", "stage": "input", "action": "allow", "score": 0.01},
        {"guard": "grounding", "stage": "output", "action": "flag", "score": 0.5},
    ]
    assert grounding_score(decisions) == 0.5


def test_no_grounding_decision_means_no_score() -> None:
    assert grounding_score([{"guard": "pii", "action": "allow", "score": 1.0}]) is None
    assert grounding_score([{"guard": "grounding", "action": "allow"}]) is None
    assert grounding_score([]) is None
