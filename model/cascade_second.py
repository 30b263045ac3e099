"""The second reading's bound (`model.verifier.second_read`), set on the calibration photos.

The cascade so far decides every calibration photo as the worker would (`model.offline_score.score_paths`),
with a second reading that asks for more characters than any picture holds: every photo the second engine
would read is read, none is flagged, and each one's count is recorded (`second_read_characters`). The card's
count is then the least that flags at most `max_photos` of them: the second reading's false positives on
photos are what it adds to the cascade's, and it adds them at most at this rate on photos like these.
Nothing else moves: the first readings decide as before, and only their products are read again.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.cascade import TextCascade
from model.cascade_card import last_bound_step, union_bound_after
from model.errors import ConfigError
from model.verifier.second_read import SECOND_ENGINE, SecondRead

# A count no picture reaches: with it every photo the second engine would read is read, and none flagged.
_UNREACHABLE = 10**9


@dataclass(frozen=True)
class SecondCounts:
    """What the second engine read in each picture of a set it would read: characters, and of them those
    read confidently (`TextFeatures.confident_characters`), in the same order."""

    characters: tuple[int, ...]
    confident: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.confident and len(self.confident) != len(self.characters):
            raise ValueError("the confident counts must be given for every picture read, or for none")

    def __len__(self) -> int:
        return len(self.characters)

    def confident_or_zero(self) -> tuple[int, ...]:
        """The confident counts (zero for each picture where none were given)."""
        return self.confident or (0,) * len(self.characters)


@dataclass(frozen=True)
class SecondReadRequest:
    """What `alocc cascade attach --second-read` asks for: the dataset whose calibration photos set the
    count, the most of them it may flag, which pages are read again (`SecondRead.min_boxes`,
    `SecondRead.max_ground`), and a folder of training negatives the count must also stay above (None: the
    calibration photos alone set it)."""

    data: Path
    cache: Path
    max_photos: int
    min_boxes: int = 0
    max_ground: float | None = None
    negatives: Path | None = None
    min_confident: int | None = None


def least_count(counts: Sequence[int], max_photos: int) -> int:
    """The least character count at which at most `max_photos` of `counts` reach it (1 at the least)."""
    if max_photos < 0:
        raise ConfigError(f"the second reading may flag no fewer than 0 photos, not {max_photos}")
    ranked = sorted((int(count) for count in counts), reverse=True)
    if len(ranked) <= max_photos:
        return 1
    return max(1, ranked[max_photos] + 1)


def calibration_second_counts(
    model_dir: Path,
    cascade: TextCascade,
    photos: Sequence[Path],
    *,
    engine: str = SECOND_ENGINE,
    min_boxes: int = 0,
    max_ground: float | None = None,
    desc: str = "calib/other",
) -> tuple[SecondCounts, str]:
    """What the second engine reads in each calibration photo it would read under `cascade` with a second
    reading by `engine` of pages with `min_boxes` boxes found and a ground no flatter than `max_ground`
    (whatever its count), and that engine's version.

    Raises:
        ConfigError: the second engine cannot run here, or a photo could not be decided.
    """
    from tqdm import tqdm

    from model.offline_score import score_paths
    from model.scoring import Scorer
    from model.verifier.engines import VerifierUnavailable
    from model.verifier.text_verifier import TextVerifier

    second = SecondRead(_UNREACHABLE, engine=engine, min_boxes=min_boxes, max_ground=max_ground)
    probe = dataclasses.replace(cascade, policy=dataclasses.replace(cascade.policy, second_read=second))
    verifier = TextVerifier(cascade.verifier)
    try:
        engine_version = str(verifier.second_verifier(second).engine.version())
    except VerifierUnavailable as exc:
        raise ConfigError(f"the second reading's engine cannot run here: {exc}") from exc
    scorer = Scorer.load(model_dir, device="cpu")
    records = score_paths(scorer, list(photos), cascade=(probe, verifier))
    characters, confident = [], []
    progress = tqdm(records, total=len(photos), desc=desc, unit="img", file=sys.stderr)
    for record in progress:
        if "error" in record or record.get("decided_by") == "model_fallback":
            raise ConfigError(f"{desc} picture {record.get('path')} was not decided: {record}")
        features = record.get("verifier") or {}
        if features.get("second_read_characters") is not None:
            characters.append(int(features["second_read_characters"]))
            confident.append(int(features.get("second_confident_characters", 0)))
    return SecondCounts(tuple(characters), tuple(confident)), engine_version


def with_second_read(
    cascade: TextCascade,
    counts: SecondCounts,
    calibration_photos: int,
    *,
    engine_version: str,
    max_photos: int = 1,
    engine: str = SECOND_ENGINE,
    min_boxes: int = 0,
    max_ground: float | None = None,
    negative_counts: SecondCounts | None = None,
    min_confident: int | None = None,
) -> TextCascade:
    """The cascade with the second reading, its count the least that flags at most `max_photos` of the
    calibration photos the second engine reads (`counts`, from `calibration_second_counts`), raised above
    every training negative it reads (`negative_counts`, where given). The bound it adds to the card's
    union bound is (flagged + 1) / (calibration photos + 1). The evaluation the card recorded no longer
    describes its decisions: dropped. With `min_confident` (chosen on the training families), a page is a
    card too where that many characters are read confidently; it is raised above every training negative's
    confident count, and the photos it flags count in the bound.

    Few calibration photos are read again and the second engine reads next to nothing in most, so the
    count their tail sets can be a handful of characters; the training negatives (textures, prints) show
    how much the engine reads in pictures that are no card, and a count under that would flag them.

    Raises:
        ConfigError: `max_photos` is negative.
    """
    calibrated = least_count(counts.characters, max_photos)
    negatives = negative_counts or SecondCounts(())
    negatives_top = max(negatives.characters, default=-1)
    least = max(calibrated, negatives_top + 1)
    if min_confident is not None:
        min_confident = max(min_confident, max(negatives.confident_or_zero(), default=-1) + 1)
    second = SecondRead(
        least,
        engine=engine,
        engine_version=engine_version,
        min_boxes=min_boxes,
        max_ground=max_ground,
        min_confident=min_confident,
    )
    flagged = sum(
        second.card({"read_characters": read, "confident_characters": sure})
        for read, sure in zip(counts.characters, counts.confident_or_zero(), strict=True)
    )
    # The union bound so far (a second reading attached before is replaced, not added to).
    prior = union_bound_after(cascade, last_bound_step(cascade, excluding="second_read"))
    bound = (flagged + 1) / (calibration_photos + 1)
    record: dict[str, Any] = {
        "engine_version": engine_version,
        "calibration_photos": calibration_photos,
        "photos_read": len(counts),
        "max_photos": max_photos,
        "min_boxes": min_boxes,
        "max_ground": max_ground,
        "min_characters": least,
        "calibrated_characters": calibrated,
        "photos_flagged": flagged,
        "false_positive_bound": prior + bound,
    }
    if negative_counts is not None:
        record["negatives_read"] = len(negative_counts)
        record["negatives_top_characters"] = max(negatives_top, 0)
    if min_confident is not None:
        record["min_confident"] = min_confident
        record["negatives_top_confident"] = max(negatives.confident_or_zero(), default=0)
    policy = dataclasses.replace(cascade.policy, second_read=second)
    calibration = {**cascade.calibration, "second_read": record}
    return dataclasses.replace(cascade, policy=policy, calibration=calibration, measured={})
