"""Which version a worker serves: the card's text cascade, or the model alone when the verifier is off."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from model.cascade import BASE_RULE_INPUTS, CascadePolicy, CascadeRule, TextCascade
from model.verifier import VerifierConfig
from worker.factory import served_cascade
from worker.failures import ConfigurationError
from worker.settings import Settings, VerifierSettings


@dataclass
class _Card:
    text_cascade: dict[str, Any] | None


@dataclass
class _Scorer:
    model_version: str
    card: _Card


def _cascade(base: str) -> TextCascade:
    rule = CascadeRule(
        weights=(1.0,) * 7, bias=0.0, means=(0.0,) * 7, scales=(1.0,) * 7, inputs=BASE_RULE_INPUTS
    )
    return TextCascade(base, VerifierConfig(), "tesseract 5.3.0", CascadePolicy(0.3, rule, 0.2))


def test_the_cards_cascade_is_served_unless_the_verifier_is_disabled() -> None:
    cascade = _cascade("m1")
    scorer = _Scorer("m1", _Card(cascade.to_json()))

    assert served_cascade(Settings(), scorer) == cascade
    assert served_cascade(Settings(verifier=VerifierSettings(enabled=False)), scorer) is None
    assert served_cascade(Settings(), _Scorer("m1", _Card(None))) is None


def test_a_cascade_fitted_over_other_weights_or_edited_by_hand_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="fitted over m0"):
        served_cascade(Settings(), _Scorer("m1", _Card(_cascade("m0").to_json())))
    edited = {**_cascade("m1").to_json(), "version": "m1-ocr-00000000"}
    with pytest.raises(ConfigurationError, match="edited by hand"):
        served_cascade(Settings(), _Scorer("m1", _Card(edited)))


def test_an_engine_release_other_than_the_cards_is_refused_unless_allowed() -> None:
    from ocr_samples import engine_reads

    from worker.factory import build_verification

    if not engine_reads():
        pytest.skip("tesserocr or its language models missing")
    other_release = _cascade("m1")  # calibrated on "tesseract 5.3.0"; tesserocr reports its own release
    closers: list[Any] = []
    try:
        with pytest.raises(ConfigurationError, match=r"calibrated with tesseract 5\.3\.0"):
            build_verification(Settings(), other_release, closers)
        allowed = Settings(verifier=VerifierSettings(allow_engine_mismatch=True))
        assert build_verification(allowed, other_release, closers) is not None
    finally:
        for closer in closers:
            closer.close()


def test_a_second_engine_release_other_than_the_cards_is_refused_unless_allowed() -> None:
    import dataclasses

    from ocr_samples import engine_reads

    from model.verifier.second_read import SecondRead
    from worker.factory import build_verification

    if not engine_reads():
        pytest.skip("tesserocr or its language models missing")
    served = _cascade("m1")
    policy = dataclasses.replace(served.policy, second_read=SecondRead(9, engine_version="rapidocr 0.0"))
    other_second = dataclasses.replace(served, engine_version="", policy=policy)
    closers: list[Any] = []
    try:
        # The second engine is checked after the main one (whose release differs here too).
        with pytest.raises(ConfigurationError, match=r"calibrated with tesseract 5\.3\.0"):
            build_verification(
                Settings(), dataclasses.replace(other_second, engine_version="tesseract 5.3.0"), closers
            )
        installed = _installed_main_release(closers)
        with pytest.raises(ConfigurationError, match=r"second reading was calibrated with rapidocr 0\.0"):
            build_verification(
                Settings(), dataclasses.replace(other_second, engine_version=installed), closers
            )
        allowed = Settings(verifier=VerifierSettings(allow_engine_mismatch=True))
        assert build_verification(allowed, other_second, closers) is not None
    finally:
        for closer in closers:
            closer.close()


def _installed_main_release(closers: list[Any]) -> str:
    """The release of the main engine installed here (what a child reports)."""
    from model.verifier.ocr_processes import OcrProcessReader
    from worker.factory import image_limits

    reader = OcrProcessReader(VerifierConfig(), image_limits(Settings()))
    closers.append(reader)
    return reader.check()
