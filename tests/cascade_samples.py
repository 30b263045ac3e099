"""Cascade rules for tests that need a served cascade whose decision is easy to predict.

Importable as `cascade_samples`: pytest puts this folder on the path for its conftest.
"""

from __future__ import annotations

from model.cascade import BASE_RULE_INPUTS, CascadeRule


def characters_rule(bias: float = -5.0) -> CascadeRule:
    """A main rule that weighs the characters read alone: P(card) = sigmoid(5 * log1p(characters) + bias)
    (means 0, scales 1), over the inputs every card can weigh."""
    weights = tuple(5.0 if name == "log_read_characters" else 0.0 for name in BASE_RULE_INPUTS)
    size = len(BASE_RULE_INPUTS)
    return CascadeRule(
        weights=weights, bias=bias, means=(0.0,) * size, scales=(1.0,) * size, inputs=BASE_RULE_INPUTS
    )
