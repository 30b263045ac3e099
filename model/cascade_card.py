"""`alocc cascade attach`: put a fitted cascade on a checkpoint's card, so that one version names it whole.

`alocc cascade fit` measures the curve and chooses a point; this writes that point (the verifier's engine,
version and configuration, the rule, `send_from` and the threshold, how they were calibrated and what the
point measured) into `card.json` as `text_cascade`; with `--quadrants`, the quadrant route that
`alocc cascade quadrants` measured over that cascade (`model.quadrants`), at `--route-alpha`; with
`--card-alpha`, the model's card band (`with_card_band`); with `--panel-read`, the panel reading
(`with_panel_read`); with `--sheet-alpha`, the sheet route (`model.cascade_sheets.with_sheet_route`).
Without `--fit`, the band, the panel reading or the sheet route is added to the cascade the card already
serves. The weights are not touched: the checkpoint is the same ALOCC model, now served with its verifier
under the cascade's own version (`TextCascade.version`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from model.cascade import CascadePolicy, CascadeRule, TextCascade
from model.errors import ConfigError
from model.verifier.engines import VerifierConfig
from model.verifier.panel_read import PanelRead

if TYPE_CHECKING:  # model.checkpoint imports torch: not at `alocc --help` time
    from model.cascade_fit import Measurements
    from model.cascade_second import SecondReadRequest
    from model.checkpoint import ModelCard


def cascade_from_fit(report: dict[str, Any], card: ModelCard) -> TextCascade:
    """The cascade of a fit report's chosen point, over the model `card` describes.

    Raises:
        ConfigError: the report was fitted over another model, or lacks what the card must record.
    """
    if report.get("model_version") != card.model_version:
        raise ConfigError(
            f"the cascade was fitted over {report.get('model_version')!r}, not over this checkpoint's "
            f"{card.model_version!r}: fit it again with --model"
        )
    if "engine_version" not in report:
        raise ConfigError(
            "the fit report does not record the OCR engine's version: run `alocc cascade fit` again"
        )
    chosen = next(point for point in report["curve"] if point["send_from"] == report["chosen_send_from"])
    return TextCascade(
        base_model_version=card.model_version,
        verifier=VerifierConfig(**report["verifier"]),
        engine_version=str(report["engine_version"]),
        policy=CascadePolicy.from_json(report["policy"]),
        calibration={
            "method": "conformal",
            "target_fpr": report["alpha"],
            "calibration_photos": report["calibration_photos"],
            "budget_share": report["budget_share"],
            "verifier_share_calib_photos": chosen["verifier_share_calib_photos"],
            "rule_fitted_on": report["fit"],
            "train_card_recall": chosen["train_card_recall"],
        },
        measured=chosen["eval"],
    )


def with_quadrant_route(cascade: TextCascade, report: dict[str, Any], alpha: float) -> TextCascade:
    """The cascade with the quadrant route that `alocc cascade quadrants` measured over it at `alpha`.

    Raises:
        ConfigError: the report was measured over another cascade, or has no route at `alpha`.
    """
    if report.get("cascade_version") != cascade.version:
        raise ConfigError(
            f"the quadrant route was measured over {report.get('cascade_version')!r}, not over the fitted "
            f"cascade {cascade.version!r}: run `alocc cascade quadrants` on the attached fit first"
        )
    row = next((r for r in report["evaluation"] if r.get("alpha") == alpha), None)
    if row is None:
        raise ConfigError(
            f"the quadrant report has no route at alpha {alpha}: measure it with --alpha {alpha}"
        )
    policy = dataclasses.replace(
        cascade.policy,
        send_from=float(row["send_from"]),
        parts_send_from=float(row["parts_send_from"]),
        threshold=float(row["threshold"]),
        parts_member=report.get("parts_member"),
        parts_rule=CascadeRule.from_json(report["parts_rule"]) if report.get("parts_rule") else None,
    )
    calibration = {
        **cascade.calibration,
        "target_fpr": alpha,
        "quadrant_route": {
            "whole_share": report["whole_share"],
            "chosen_on": report.get("held_out", []),
            "held_out_layouts": report.get("held_out_layouts", []),
        },
    }
    measured = {key: value for key, value in row.items() if "/" in key}
    return dataclasses.replace(cascade, policy=policy, calibration=calibration, measured=measured)


def source_margin(scores: npt.ArrayLike, sources: Sequence[str]) -> float:
    """How far, in logits, one photo source's highest model score has stood above every other source's: the
    largest `logit(max of a source) - logit(max of the rest)` over the sources (0 when none stands above).

    A bound set at the calibration photos' highest score holds for photos like them; the model's false
    positives follow the look of a photo, and a source it has never seen can score higher. Leaving each
    calibration source out in turn measures how much higher one has scored than all the others.
    """
    values = np.asarray(scores, dtype=np.float64).ravel()
    names = np.asarray(list(sources))
    if len(names) != len(values):
        raise ValueError("one source per score")
    logits = _logit(values)
    margin = 0.0
    for name in set(names.tolist()):
        inside = names == name
        if inside.all():
            return 0.0  # one source: nothing to leave out
        margin = max(margin, float(logits[inside].max() - logits[~inside].max()))
    return margin


def _logit(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    clipped = np.clip(values, 1e-7, 1 - 1e-7)
    return np.asarray(np.log(clipped) - np.log1p(-clipped))


def raised_bound(scores: npt.ArrayLike, sources: Sequence[str], alpha: float) -> dict[str, float]:
    """A bound on calibration photos' scores that a photo source like theirs, unseen, still falls under: the
    conformal bound at `alpha`, raised by the largest leave-one-source-out lead (`source_margin`, in logits).
    The card band's `card_from` (`with_card_band`) and the sheet route's (`model.cascade_sheets`)."""
    from model.calibrate import conformal_threshold  # imports torch

    values = np.asarray(scores, dtype=np.float32).ravel()
    bound = conformal_threshold(values, alpha).threshold
    margin = source_margin(values, sources)
    raised = float(1.0 / (1.0 + np.exp(-(_logit(np.array([bound]))[0] + margin))))
    return {"conformal_bound": float(bound), "source_margin_logits": margin, "card_from": raised}


def with_card_band(
    cascade: TextCascade, calibration_scores: npt.ArrayLike, sources: Sequence[str], alpha: float
) -> TextCascade:
    """The cascade with the model's card band (`CascadePolicy.card_from`): from there up, an image is a card
    without a read.

    The band starts at the conformal bound at `alpha` on the calibration photos' model scores, raised by the
    largest amount one calibration source has scored above all the others (`source_margin`, in logits), so a
    source like that, unseen, still falls under it. The band's false-positive bound (`alpha`) adds to the
    cascade's (a union bound; the card records both). The evaluation the card recorded no longer describes
    its decisions, so it is dropped (`alocc cascade evaluate --record` measures the new card).

    Raises:
        ConfigError: the photos are not the ones the cascade was calibrated on (another count), or the band
            would not start above `send_from`.
    """
    scores = np.asarray(calibration_scores, dtype=np.float32).ravel()
    check_calibration_photos(cascade, len(scores))
    bound = raised_bound(scores, sources, alpha)
    card_from = bound["card_from"]
    if card_from <= cascade.policy.send_from:
        raise ConfigError(
            f"a card band from {card_from:.4f} (alpha {alpha}) does not lie above send_from "
            f"{cascade.policy.send_from:.4f}: choose a smaller alpha"
        )
    policy = dataclasses.replace(cascade.policy, card_from=card_from)
    calibration = {
        **cascade.calibration,
        "card_band": {
            "target_fpr": alpha,
            "calibration_photos": len(scores),
            "conformal_bound": bound["conformal_bound"],
            "source_margin_logits": bound["source_margin_logits"],
            # The cascade's false positives and the band's together (a union bound).
            "false_positive_bound": float(cascade.calibration.get("target_fpr", 0.0)) + alpha,
        },
    }
    return dataclasses.replace(cascade, policy=policy, calibration=calibration, measured={})


def with_union_bound(
    cascade: TextCascade,
    policy: CascadePolicy,
    name: str,
    *,
    after: str,
    alpha: float,
    record: dict[str, Any],
) -> TextCascade:
    """The cascade serving `policy`, its calibration recording the step `name` (`record`, its `alpha` and
    the union bound: the bound recorded by the step `after`, or the cascade's own alpha, plus `alpha`).
    The evaluation the card recorded no longer describes its decisions, so it is dropped."""
    import dataclasses

    step = {
        "target_fpr": alpha,
        **record,
        # everything before it and this step together
        "false_positive_bound": union_bound_after(cascade, after) + alpha,
    }
    return dataclasses.replace(
        cascade, policy=policy, calibration={**cascade.calibration, name: step}, measured={}
    )


def union_bound_after(cascade: TextCascade, step: str) -> float:
    """The false-positive bound the calibration step `step` recorded, or the cascade's own alpha where there
    is no such step: what a later step's bound adds to."""
    before = cascade.calibration.get(step, {}).get("false_positive_bound")
    return float(before if before is not None else cascade.calibration.get("target_fpr", 0.0))


def last_bound_step(cascade: TextCascade, *, excluding: str) -> str:
    """The calibration step whose union bound a step added now adds to: the one recording the largest, other
    than `excluding` (the step being added, which may be there from an earlier attach); "" where none."""
    steps = {
        name: float(step["false_positive_bound"])
        for name, step in cascade.calibration.items()
        if isinstance(step, dict) and "false_positive_bound" in step and name != excluding
    }
    return max(steps, key=lambda name: steps[name]) if steps else ""


def with_rules_floor(cascade: TextCascade, min_confident: int) -> TextCascade:
    """The cascade with the main and parts rules' floor (`CascadePolicy.min_confident`): their readings with
    fewer confident characters score 0. Its threshold is kept: the floor only lowers cascade scores, so the
    calibration photos it flags are some of those it flagged before, and every false-positive bound on the
    card still holds. Calibrated again instead, the threshold would fall towards 0 where the floor takes
    out the photos that set it, and every reading with a confident character would count (the fit's
    `confidence_floor` table). The evaluation the card recorded no longer describes its decisions: dropped.

    Raises:
        ConfigError: the floor is negative.
    """
    if min_confident < 0:
        raise ConfigError(f"the rules' floor is a count of confident characters, not {min_confident}")
    policy = dataclasses.replace(cascade.policy, min_confident=min_confident)
    record = {"min_confident": min_confident, "threshold_kept": float(cascade.policy.threshold)}
    calibration = {**cascade.calibration, "rules_floor": record}
    return dataclasses.replace(cascade, policy=policy, calibration=calibration, measured={})


def check_calibration_photos(cascade: TextCascade, count: int) -> None:
    """Refuse calibration photos other than those the cascade was calibrated on (another count)."""
    expected = cascade.calibration.get("calibration_photos")
    if expected is not None and int(expected) != count:
        raise ConfigError(
            f"the cascade was calibrated on {expected} photos, not on these {count}: pass the dataset it was "
            "fitted on"
        )


# The panel reading counts where it reads more confident characters than all but this share of the
# calibration photos whose page reading read nothing did, read flattened (`panel_bound`).
PANEL_PHOTO_SHARE = 0.01


def panel_bound(confident: Sequence[int], share: float = PANEL_PHOTO_SHARE) -> int:
    """The fewest confident characters a flattened reading must read to count (`PanelRead.min_confident`):
    at most `share` of the given photos' flattened readings (`confident`) reach it."""
    values = np.asarray(list(confident), dtype=np.int64)
    allowed = int(np.floor(share * len(values)))
    bound = 1
    while int(np.sum(values >= bound)) > allowed:
        bound += 1
    return bound


def with_panel_read(cascade: TextCascade, data: Path, cache: Path, model_dir: Path | None) -> TextCascade:
    """The cascade with the panel reading on its score route (`model.verifier.panel_read`), its bound set on
    the dataset's calibration photos (`panel_bound` over those whose page reading read nothing); where the
    calibration photos' cascade scores move with it, the threshold is set again on them (the conformal rule
    at the cascade's alpha), so the false-positive bound holds for the cascade as served.

    Raises:
        ConfigError: the photos are not the ones the cascade was calibrated on.
    """
    from model.calibrate import conformal_threshold  # imports torch
    from model.cascade_fit import CALIB, EvalFolder, Measurements, _sent_features, with_panel_reading

    policy = cascade.policy
    measured = Measurements(data, cache, cascade.verifier, None if model_dir is None else str(model_dir))
    keys = measured.files(CALIB)
    check_calibration_photos(cascade, len(keys))
    nothing = [key for key, row in zip(keys, measured.features(keys), strict=True) if PanelRead.wanted(row)]
    confident = [int(row["confident_characters"]) for row in measured.flattened(nothing)]
    read = dataclasses.replace(policy, panel_read=PanelRead(panel_bound(confident)))
    scores, looks = measured.scores(keys), measured.looks(keys)
    parts = None
    if policy.parts_send_from is not None:
        from model.cascade_quadrants import PartScores

        model = None if model_dir is None else str(model_dir)
        parts = PartScores(data, cache, model, policy.parts_member).get(keys)[1]
    features = _sent_features(measured, keys, scores, 0.0, gate=policy.gate, looks=looks)
    photos = EvalFolder(CALIB, False, scores, looks, features, [])
    before = policy.cascade_scores(scores, features, looks, parts)
    after = read.cascade_scores(scores, with_panel_reading(measured, read, photos).features, looks, parts)
    moved = int(np.sum(before != after))
    if moved:
        alpha = float(cascade.calibration["target_fpr"])
        threshold = conformal_threshold(after.astype(np.float32), alpha).threshold
        read = dataclasses.replace(read, threshold=threshold)
    calibration = {
        **cascade.calibration,
        "panel_read": {
            "photos_read_flattened": len(nothing),
            "photo_share": PANEL_PHOTO_SHARE,
            "most_confident_characters": max(confident, default=0),
            "calibration_scores_moved": moved,
        },
    }
    return dataclasses.replace(cascade, policy=read, calibration=calibration, measured={})


def attach(
    model_dir: Path,
    out_dir: Path,
    report: dict[str, Any] | None,
    *,
    quadrants: tuple[dict[str, Any], float] | None = None,
    card_band: tuple[npt.ArrayLike, Sequence[str], float] | None = None,
    panel_read: tuple[Path, Path] | None = None,
    sheet_route: tuple[npt.ArrayLike, Sequence[str], float] | None = None,
    sheet_reading: tuple[npt.ArrayLike, npt.ArrayLike, Sequence[str], float, float] | None = None,
    layout_band: tuple[Measurements, list[str], list[str], float, float] | None = None,
    rules_floor: int | None = None,
    sheet_second_read: SheetSecondCalibration | None = None,
    second_read: SecondReadRequest | None = None,
) -> ModelCard:
    """Write the checkpoint with the cascade into `out_dir` (may be `model_dir`); returns its card. With
    `quadrants` (a `cascade-quadrants.json` report and an alpha), the cascade gets that quadrant route; with
    `card_band` (the calibration photos' model scores, their sources and an alpha), the model's card band;
    with `panel_read` (the dataset and the measurement cache), the panel reading (`with_panel_read`); with
    `sheet_route` (the calibration photos' best sheet scores, their sources and an alpha), the sheet route;
    with `sheet_reading` (their best sheet scores, the characters read in those sheets, their sources, a
    read share and an alpha), the sheet route's reading (`model.cascade_sheets.with_sheet_reading`); with
    `layout_band` (the dataset's measurements, its calibration photos, their sources, an alpha and the share
    of the band's training cards its emptiness floor keeps), the layout band
    (`model.cascade_layout.with_layout_band`); with `rules_floor` (a count of confident characters), the
    main and parts rules' floor, its threshold kept (`with_rules_floor`); with `sheet_second_read` (what
    the first and second engines read in the calibration photos' best sheets, and an alpha), the sheet's
    second reading (`model.cascade_sheets.with_sheet_second_read`); with `second_read` (the dataset,
    the measurement cache, the most calibration photos it may flag and the least boxes the first reading
    must have found), the second reading, last: its
    count is set on what the cascade so far leaves to it (`model.cascade_second`).
    Without a fit `report`, the cascade is the one the card already serves (to give it a band, a panel
    reading, a sheet route or its reading).

    Raises:
        ConfigError: no fit report and no cascade on the card, or a quadrant route without a fit report.
    """
    from model.checkpoint import WEIGHTS_FILE, read_card, write_card

    card = read_card(model_dir)
    if report is not None:
        cascade = cascade_from_fit(report, card)
    elif card.text_cascade is None or quadrants is not None:
        raise ConfigError(
            "without --fit only a card band, a panel reading, a sheet route or its reading, a layout band, "
            "the rules' floor or the second reading can be added, to a card that serves a cascade"
        )
    else:
        cascade = TextCascade.from_json(card.text_cascade)
    if quadrants is not None:
        cascade = with_quadrant_route(cascade, *quadrants)
    if card_band is not None:
        cascade = with_card_band(cascade, *card_band)
    if panel_read is not None:
        cascade = with_panel_read(cascade, *panel_read, model_dir)
    if sheet_route is not None:
        from model.cascade_sheets import with_sheet_route

        cascade = with_sheet_route(cascade, *sheet_route)
    if sheet_reading is not None:
        from model.cascade_sheets import with_sheet_reading

        scores, characters, sources, share, alpha = sheet_reading
        cascade = with_sheet_reading(cascade, scores, characters, sources, share=share, alpha=alpha)
    if layout_band is not None:
        from model.cascade_layout import with_layout_band

        measured, keys, sources, alpha, keep = layout_band
        cascade = with_layout_band(cascade, measured, keys, sources, alpha, keep=keep)
    if rules_floor is not None:
        cascade = with_rules_floor(cascade, rules_floor)
    if sheet_second_read is not None:
        from model.cascade_sheets import with_sheet_second_read

        calibrated = sheet_second_read
        cascade = with_sheet_second_read(
            cascade,
            calibrated.scores,
            calibrated.first_characters,
            calibrated.second_characters,
            calibrated.sources,
            alpha=calibrated.alpha,
            engine_version=calibrated.engine_version,
            share=calibrated.share,
        )
    if second_read is not None:
        from model.cascade_second import calibration_second_counts, with_second_read

        request = second_read
        _, keys = _calibration_photos(request.data, request.cache, model_dir)
        photos = [request.data / key for key in keys]
        min_boxes, max_ground = request.min_boxes, request.max_ground
        counts, engine_version = calibration_second_counts(
            model_dir, cascade, photos, min_boxes=min_boxes, max_ground=max_ground
        )
        negative_counts = None
        if request.negatives is not None:
            negatives = sorted(path for path in request.negatives.rglob("*") if path.is_file())
            negative_counts, _ = calibration_second_counts(
                model_dir,
                cascade,
                negatives,
                min_boxes=min_boxes,
                max_ground=max_ground,
                desc=str(request.negatives),
            )
        cascade = with_second_read(
            cascade,
            counts,
            len(photos),
            engine_version=engine_version,
            max_photos=request.max_photos,
            min_boxes=min_boxes,
            max_ground=max_ground,
            negative_counts=negative_counts,
            min_confident=request.min_confident,
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    if out_dir.resolve() != model_dir.resolve():
        shutil.copyfile(model_dir / WEIGHTS_FILE, out_dir / WEIGHTS_FILE)
    attached = dataclasses.replace(card, text_cascade=cascade.to_json())
    write_card(out_dir, attached)
    return attached


def register(subcommands: Any) -> None:
    """Attach `alocc cascade attach` to the root parser's subparsers."""
    from model.model_commands import add_cascade_command

    parser = add_cascade_command(
        subcommands,
        action="attach",
        action_help="record a fitted cascade on a checkpoint's card (its own model version)",
        description=__doc__,
    )
    parser.add_argument(
        "--fit",
        type=Path,
        help="cascade-ENGINE.json from `alocc cascade fit` (without it: give the card's own cascade a band)",
    )
    parser.add_argument(
        "--model", type=Path, help="checkpoint directory (default: the shipped default model)"
    )
    parser.add_argument("--out", type=Path, help="where to write the checkpoint (default: in place)")
    parser.add_argument(
        "--quadrants",
        type=Path,
        help="cascade-quadrants.json from `alocc cascade quadrants`: also serve its quadrant route",
    )
    parser.add_argument(
        "--route-alpha",
        type=float,
        default=0.001,
        help="the route's target false-positive rate (default %(default)s)",
    )
    parser.add_argument(
        "--card-alpha",
        type=float,
        help="also serve the model's card band: model scores from the conformal bound at this false-positive "
        "rate on the calibration photos are cards without a read (needs --data)",
    )
    parser.add_argument(
        "--data", type=Path, help="the dataset the cascade was fitted on (its calibration photos: the band)"
    )
    parser.add_argument(
        "--panel-read",
        action="store_true",
        help="also read again, with its ground flattened, what the score route sends and the page reading "
        "reads nothing in (its bound set on the calibration photos: needs --data)",
    )
    parser.add_argument(
        "--sheet-alpha",
        type=float,
        help="also serve the sheet route: pictures whose best straightened sheet scores from the bound at "
        "this false-positive rate on the calibration photos are cards without a read (needs --data; "
        "`alocc cascade sheets` measures it first)",
    )
    parser.add_argument(
        "--sheet-read-share",
        type=float,
        help="also read the best sheet of pictures whose sheet scores under the sheet route's bound but "
        "among the top share of calibration photos' (this share); a card from the characters bound at "
        "--sheet-read-alpha (needs --data and a sheet route; `alocc cascade sheets` measures it first)",
    )
    parser.add_argument(
        "--sheet-read-alpha",
        type=float,
        default=0.0005,
        help="the sheet reading's false-positive rate on the calibration photos (default %(default)s)",
    )
    parser.add_argument(
        "--sheet-second-alpha",
        type=float,
        help="also read again, with PP-OCRv6 tiny, the best sheets the sheet reading leaves short of its "
        "count: cards from the characters bound at this false-positive rate on the calibration photos it "
        "reads (needs --data and a sheet reading; `model.sheets.SheetRoute.second_read`)",
    )
    parser.add_argument(
        "--sheet-second-share",
        type=float,
        help="with --sheet-second-alpha: PP-OCRv6 tiny alone also reads the best sheets scoring under the "
        "sheet reading's band, from the bound at this share of the calibration photos' best sheet scores up",
    )
    parser.add_argument(
        "--layout-alpha",
        type=float,
        help="also serve the layout band: pictures the score route sends are cards without a read where a "
        "rule on the model's score and the words the layout analysis finds (none read) reaches the bound at "
        "this false-positive rate on the calibration photos (needs --data; `model.cascade_layout`)",
    )
    parser.add_argument(
        "--layout-keep",
        type=float,
        default=0.95,
        help="the layout band decides only on grounds at least as empty as those of this share of its "
        "training cards: a texture fills its ground (default %(default)s; 1: no floor)",
    )
    parser.add_argument(
        "--min-confident",
        type=int,
        help="also serve the main and parts rules' floor: their readings with fewer characters read with "
        "confidence 90 or more score 0, the threshold kept (`CascadePolicy.min_confident`; 0: none)",
    )
    parser.add_argument(
        "--second-read",
        type=int,
        metavar="MAX_PHOTOS",
        help="also read again, with PP-OCRv6 tiny, the pages the main and corner rules leave products: cards "
        "from the least count of characters it reads in at most MAX_PHOTOS of the calibration photos it "
        "reads (needs --data; `model.verifier.second_read`)",
    )
    parser.add_argument(
        "--second-min-boxes",
        type=int,
        default=0,
        help="with --second-read: read again only pages in which the first reading found at least this many "
        "word boxes (default %(default)s: every page)",
    )
    parser.add_argument(
        "--second-max-ground",
        type=float,
        help="with --second-read: read again only pages whose ground outside the read words is at most this "
        "share flat (`TextFeatures.ground_emptiness`; default: any ground)",
    )
    parser.add_argument(
        "--second-min-confident",
        type=int,
        help="with --second-read: a page is a card too where the second engine reads at least this many "
        "characters confidently (raised above every --second-negatives picture's; default: the count alone)",
    )
    parser.add_argument(
        "--second-negatives",
        type=Path,
        help="with --second-read: a folder of training negatives (data/vN/train/negatives) the count is also "
        "raised above: none of them is flagged by the second reading",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path("reports/cascade"),
        help="the measurement caches of `alocc cascade fit` / `evaluate` (default %(default)s)",
    )
    parser.set_defaults(handler=run_attach)


def _calibration_photos(data: Path, cache: Path, model_dir: Path) -> tuple[Measurements, list[str]]:
    """The dataset's measurements (the fit's cache) and its calibration photos (`calib/other`, as the fit used
    them).

    Raises:
        ConfigError: the dataset has no calibration photos.
    """
    from model.cascade_fit import CALIB, Measurements, served_verifier

    measured = Measurements(data, cache, served_verifier(model_dir), str(model_dir))
    keys = measured.files(CALIB)
    if not keys:
        raise ConfigError(f"no calibration photos in {data / CALIB}")
    return measured, keys


def calibration_model_scores(data: Path, cache: Path, model_dir: Path) -> tuple[np.ndarray, list[str]]:
    """The model's score of every calibration photo of a dataset (from the fit's measurement cache where it
    holds them), and each photo's source (`model.cascade_fit.photo_source`)."""
    from model.cascade_fit import photo_source

    measured, keys = _calibration_photos(data, cache, model_dir)
    return measured.scores(keys).astype(np.float32), [photo_source(key) for key in keys]


def calibration_sheet_scores(data: Path, cache: Path, model_dir: Path) -> tuple[np.ndarray, list[str]]:
    """The best sheet score of every calibration photo of a dataset (`model.cascade_sheets.SheetScores`,
    cached beside the fit's measurements), and each photo's source."""
    from model.cascade_fit import photo_source
    from model.cascade_sheets import SheetScores

    _, keys = _calibration_photos(data, cache, model_dir)
    return SheetScores(data, cache, str(model_dir)).get(keys), [photo_source(key) for key in keys]


@dataclass(frozen=True)
class SheetSecondCalibration:
    """What sets the sheet's second reading: the calibration photos' best sheet scores, the characters the
    first and the second engine read in those sheets (-1 where not read), their sources, the alpha, and the
    second engine's version."""

    scores: np.ndarray
    first_characters: np.ndarray
    second_characters: np.ndarray
    sources: list[str]
    alpha: float
    engine_version: str
    share: float | None = None  # the second engine's own band under the reading's (None: none)


def calibration_sheet_second(
    data: Path, cache: Path, model_dir: Path, alpha: float, share: float | None = None
) -> SheetSecondCalibration:
    """`SheetSecondCalibration` on a dataset's calibration photos (their sheets read by both engines where
    they score from `model.cascade_sheets.READ_FLOOR` up; cached beside the sheet scores)."""
    from model.cascade_fit import photo_source
    from model.cascade_sheets import SheetReadings, SheetScores
    from model.verifier.second_read import SecondRead

    measured, keys = _calibration_photos(data, cache, model_dir)
    sheets = SheetScores(data, cache, str(model_dir))
    scores = sheets.get(keys)
    first = SheetReadings(sheets, measured).characters(keys, scores)
    second_readings = SheetReadings(sheets, measured, SecondRead(1))
    second = second_readings.characters(keys, scores)
    sources = [photo_source(key) for key in keys]
    version = second_readings.engine_version()
    return SheetSecondCalibration(scores, first, second, sources, alpha, version, share)


def calibration_sheet_readings(
    data: Path, cache: Path, model_dir: Path
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The best sheet score of every calibration photo of a dataset, the characters the verifier reads in
    that sheet (-1 where it scores too low to be read: `model.cascade_sheets.SheetReadings`), and each
    photo's source."""
    from model.cascade_fit import photo_source
    from model.cascade_sheets import SheetReadings, SheetScores

    measured, keys = _calibration_photos(data, cache, model_dir)
    sheets = SheetScores(data, cache, str(model_dir))
    scores = sheets.get(keys)
    characters = SheetReadings(sheets, measured).characters(keys, scores)
    return scores, characters, [photo_source(key) for key in keys]


def run_attach(args: argparse.Namespace) -> int:
    """`alocc cascade attach`."""
    from model.scoring import default_model_dir  # imports torch: not at `alocc --help` time

    model_dir = args.model or default_model_dir()
    quadrants = (json.loads(args.quadrants.read_text()), args.route_alpha) if args.quadrants else None
    card_band = None
    if args.card_alpha is not None:
        if args.data is None:
            raise ConfigError("--card-alpha needs --data: the band is set on its calibration photos")
        card_band = (*calibration_model_scores(args.data, args.cache, model_dir), args.card_alpha)
    report = json.loads(args.fit.read_text()) if args.fit else None
    if args.panel_read and args.data is None:
        raise ConfigError("--panel-read needs --data: its bound is set on the calibration photos")
    panel_read = (args.data, args.cache) if args.panel_read else None
    sheet_route = None
    if args.sheet_alpha is not None:
        if args.data is None:
            raise ConfigError(
                "--sheet-alpha needs --data: the route's bound is set on its calibration photos"
            )
        sheet_route = (*calibration_sheet_scores(args.data, args.cache, model_dir), args.sheet_alpha)
    sheet_reading = None
    if args.sheet_read_share is not None:
        if args.data is None:
            raise ConfigError("--sheet-read-share needs --data: its bounds are set on the calibration photos")
        readings = calibration_sheet_readings(args.data, args.cache, model_dir)
        sheet_reading = (*readings, args.sheet_read_share, args.sheet_read_alpha)
    layout_band = None
    if args.layout_alpha is not None:
        if args.data is None:
            raise ConfigError("--layout-alpha needs --data: the band is fitted and bounded on the dataset")
        from model.cascade_fit import photo_source

        measured, keys = _calibration_photos(args.data, args.cache, model_dir)
        sources = [photo_source(key) for key in keys]
        layout_band = (measured, keys, sources, args.layout_alpha, args.layout_keep)
    sheet_second_read = None
    if args.sheet_second_alpha is not None:
        if args.data is None:
            raise ConfigError("--sheet-second-alpha needs --data: its count is set on the calibration photos")
        sheet_second_read = calibration_sheet_second(
            args.data, args.cache, model_dir, args.sheet_second_alpha, args.sheet_second_share
        )
    if args.second_read is not None and args.data is None:
        raise ConfigError("--second-read needs --data: its count is set on the calibration photos")
    from model.cascade_second import SecondReadRequest

    second_read = (
        None
        if args.second_read is None
        else SecondReadRequest(
            args.data,
            args.cache,
            args.second_read,
            args.second_min_boxes,
            args.second_max_ground,
            args.second_negatives,
            args.second_min_confident,
        )
    )
    out = args.out or model_dir
    card = attach(
        model_dir,
        out,
        report,
        quadrants=quadrants,
        card_band=card_band,
        panel_read=panel_read,
        sheet_route=sheet_route,
        sheet_reading=sheet_reading,
        layout_band=layout_band,
        rules_floor=args.min_confident,
        sheet_second_read=sheet_second_read,
        second_read=second_read,
    )
    assert card.text_cascade is not None
    policy = card.text_cascade["policy"]
    route = f", parts_send_from {policy['parts_send_from']:.4f}" if "parts_send_from" in policy else ""
    band = f", cards from a model score of {policy['card_from']:.4f}" if "card_from" in policy else ""
    if "panel_read" in policy:
        band += f", panel reading from {policy['panel_read']['min_confident']} confident characters"
    if "sheets" in policy:
        band += f", cards from a sheet score of {policy['sheets']['card_from']:.5f}"
        if "read_from" in policy["sheets"]:
            band += (
                f" (sheets read from {policy['sheets']['read_from']:.5f}, cards from "
                f"{policy['sheets']['read_characters']} characters)"
            )
        if "second_read" in policy["sheets"]:
            calibrated, second = (
                card.text_cascade["calibration"]["sheet_second_read"],
                policy["sheets"]["second_read"],
            )
            alone = policy["sheets"].get("second_from")
            band += "" if alone is None else f", sheets from {alone:.5f} read by it alone"
            band += (
                f", sheets the reading leaves short read again by {second['engine_version']}: cards from "
                f"{second['min_characters']} characters (flags {calibrated['calibration_flagged']} of the "
                f"{calibrated['calibration_read']} calibration photos it reads)"
            )
    if "layout_band" in policy:
        decided = card.text_cascade["calibration"]["layout_band"]["train_cards_decided"]
        floor = policy["layout_band"].get("min_emptiness", 0.0)
        band += (
            f", cards on their layout from {policy['layout_band']['cards_from']:.5f} on grounds from "
            f"{floor:.3f} empty (decides "
            f"{decided['decided']:.1%} of the {decided['sent']} train/target cards the score route sends)"
        )
    if policy.get("min_confident"):
        band += f", the rules' readings count from {policy['min_confident']} confident characters"
    if "second_read" in policy:
        calibrated, second = card.text_cascade["calibration"]["second_read"], policy["second_read"]
        bound, sure = second.get("max_ground"), second.get("min_confident")
        ground = "" if bound is None else f" on grounds at most {bound:.3f} flat"
        ground += "" if sure is None else f", or from {sure} read confidently"
        band += (
            f", pages the rules leave products read again by {second['engine_version']}: cards "
            f"from {second['min_characters']} characters, of pages with {second.get('min_boxes', 0)}+ boxes "
            f"found{ground} (flags "
            f"{calibrated['photos_flagged']} of the {calibrated['photos_read']} calibration photos it reads)"
        )
    print(
        f"{args.out or model_dir}: serves {card.serving_version} (model {card.model_version}, "
        f"verifier {card.text_cascade['engine_version']}, send_from {policy['send_from']:.4f}{route}, "
        f"threshold {policy['threshold']:.4f}{band})"
    )
    return 0
