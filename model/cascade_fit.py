"""`alocc cascade fit`: fit the cascade's rule, measure the verifier-share curve, calibrate, and evaluate.

What is used for what (nothing of an evaluation family steers a choice):

- fit the main logistic rule: `val/target` against `val/other`, where the model's scores are honest (it
  trained on `train/target` and, as outlier exposure, on `train/negatives` + `train/structured`, and
  scores those more confidently than anything new; a rule fitted there over-trusts the model);
- fit the plain-line gate (`model.screen`): its bounds pass `--gate-recall` (99%) of 200 `train/one-line`
  cards; and its own rule, for the pictures it passes: those cards against every training negative it
  passes (all of `train/negatives` and `train/structured`: few pass, and nearly none of `val/other`), on
  what the verifier reads there (the page, and the line where the drawing has glyphs:
  `model.verifier.line_read`) and the drawing's shape. The negatives' model scores are not honest there,
  so this rule gives the model's score no weight;
- the share grid (`send_from` per share) and the conformal threshold: `calib/other` (photos fitting never
  saw);
- choose the operating point: the largest share of calibration photos the verifier's budget allows
  (the budget is set from the cost of a read). Training-card recall is reported, not chosen on: it moves
  by a handful of cards as the conformal threshold moves by a few calibration photos, and says nothing
  about designs the model never learned; reading more is what lowers misses of those;
- report: the chosen point's recall on the 100 `train/one-line` cards that fitted nothing (what chose the
  gate's recall), and `eval/target`, `check/target`, `check/one-line`, `check/photographed`, `eval/other`
  (with its products carrying text), per family.

The verifier reads only the images at or above the lowest `send_from` of the grid, or that the gate
sends: the rest are decided by the model at every grid point. Model scores, plain-line looks and verifier
features are cached as JSON lines in the output folder, keyed by the file's path in the dataset, so a
second run reads no image twice.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from model.cascade import (
    GATE_RULE_INPUTS,
    RULE_INPUTS,
    SHAPE_RULE_INPUTS,
    CascadePolicy,
    CascadeRule,
    fit_rule,
    rule_inputs,
)
from model.data.folder import iter_image_files
from model.screen import PlainLineGate, plain_line_looks
from model.verifier.engines import VerifierConfig
from model.verifier.features import CONFIDENT_READ
from model.verifier.line_read import LineRead
from model.verifier.measure import spread
from model.verifier.panel_read import GROUND_BLUR, GROUND_LEVEL
from model.verifier.second_read import SecondRead

TRAIN_CARDS = "train/target"
VAL_CARDS = "val/target"
VAL_OTHER = "val/other"
TRAIN_ONE_LINE = "train/one-line"  # the one-line design, for the rule and the gate (never the model)
TRAIN_OTHER = ("train/negatives", "train/structured")
CALIB = "calib/other"
EVAL_CARDS = ("eval/target", "check/target", "check/one-line", "check/photographed")
EVAL_OTHER = "eval/other"
DEFAULT_SHARES = (0.01, 0.02, 0.03, 0.05, 0.1)
# The budget comes from the cost alone. A read costs about 67 core-ms in the worker (Tesseract's C++ API,
# second download included: `alocc bench` measured 7.1 core-ms per event with 10.5% of events read), and
# the verifier may add 10 core-ms per event: at most about 15% of events read. Unseen photos were read
# 1.7 times as often as calibration photos (they score higher), and cards are read nearly always, so on
# a mix of 5% cards reading 5% of calibration photos reads about 0.95 * 5% * 1.7 + 5% = 13% of events:
# about 8.8 core-ms per event, with room for photos that drift further.
DEFAULT_BUDGET_SHARE = 0.05
# How the verifier reads what the gate sends, besides the page: the line, where the drawing has at least
# two glyph-sized marks (every training one-line card has; 82 of the 108 training negatives the gate passes
# have one or none, nearly all photos and products cut out on a flat ground). Those are not read at all,
# not even as a page: none of them was flagged with its page read, on any set (`docs/CASCADE.md`).
DEFAULT_LINE_READ = LineRead(min_glyphs=2, skip_page=True)
# The gate's bounds pass this share of the training family's one-line cards. Chosen on that family: the
# 100 one-line cards that fit nothing were caught 95% at 0.95-0.98 and 99% at 0.99 (`held_out_one_line` in
# the report), for 1.25% of calibration photos in the gate instead of 0.65% (inside the same budget).
DEFAULT_GATE_RECALL = 0.99
# The main and parts rules' floors the fit measures (`CascadePolicy.min_confident`; `confidence_floor` in
# its report): at each, the threshold set again on the calibration photos, the training cards caught, and
# the calibration photos flagged when their source is left out of the calibration (a source it never saw).
FLOOR_GRID = (0, 1, 2, 3, 4)


class JsonLinesCache:
    """`{key: record}` kept in a JSON-lines file; `get_many` computes what is missing and appends it."""

    def __init__(self, path: Path) -> None:
        """Load what the file already holds."""
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                record = json.loads(line)
                self.records[record["key"]] = record

    def get_many(
        self, keys: Sequence[str], compute: Callable[[list[str]], list[dict[str, Any]]], *, chunk: int = 16
    ) -> list[dict[str, Any]]:
        """The record of every key, in order, computing the missing ones in chunks.

        Each chunk is appended to the file as soon as it is computed: an interrupted run keeps its work.
        """
        missing = [key for key in dict.fromkeys(keys) if key not in self.records]
        if missing:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        for start in range(0, len(missing), chunk):
            part = missing[start : start + chunk]
            with self.path.open("a") as out:
                for key, values in zip(part, compute(part), strict=True):
                    record = {"key": key, **values}
                    self.records[key] = record
                    out.write(json.dumps(record, sort_keys=True) + "\n")
        return [self.records[key] for key in keys]


def served_verifier(model_dir: str | Path | None) -> VerifierConfig:
    """How the cascade attached to a checkpoint reads (the default model's where `model_dir` is None): the
    routes and readings measured over it must read as it does. The default configuration where no cascade
    is attached yet."""
    from model.checkpoint import read_card
    from model.scoring import default_model_dir

    cascade = read_card(default_model_dir() if model_dir is None else model_dir).text_cascade
    return VerifierConfig() if cascade is None else VerifierConfig(**cascade["verifier"])


class Measurements:
    """Model scores and verifier features of dataset files, cached."""

    def __init__(self, data: Path, out: Path, config: VerifierConfig, model_dir: str | None) -> None:
        """Caches live in `out`; the verifier and the model load on first use."""
        self.data = data
        self.config = config
        self.model_dir = model_dir
        self._looks = JsonLinesCache(out / "plain-line-looks.jsonl")
        self._out = out
        # Named by what produced them (the model's version, the OCR engine's), opened on first use: a
        # cache of another model or engine release is never mixed in.
        self._score_cache: JsonLinesCache | None = None
        self._feature_cache: JsonLinesCache | None = None
        self._flattened_cache: JsonLinesCache | None = None
        self._layout_cache: JsonLinesCache | None = None
        self._second_caches: dict[SecondRead, JsonLinesCache] = {}
        self._line_features: dict[LineRead, JsonLinesCache] = {}
        self._scorer: Any = None
        self._verifier: Any = None
        self._progress = tqdm(desc=f"verifier ({config.engine})", unit="img", file=sys.stderr)

    @property
    def _scores(self) -> JsonLinesCache:
        if self._score_cache is None:
            self._score_cache = JsonLinesCache(self._out / f"model-scores-{self.model_version()}.jsonl")
        return self._score_cache

    @property
    def _features(self) -> JsonLinesCache:
        if self._feature_cache is None:
            self._feature_cache = JsonLinesCache(self._out / f"{self.features_stem()}.jsonl")
        return self._feature_cache

    def seed_features(self, measure_output: Path) -> int:
        """Take features that `alocc verifier measure --out` recorded with the same configuration."""
        added = 0
        for line in measure_output.read_text().splitlines():
            row = json.loads(line)
            key = f"{row.pop('folder')}/{row.pop('file')}"
            row.pop("ms", None)
            if key not in self._features.records:
                self._features.records[key] = {"key": key, **row}
                added += 1
        return added

    def files(self, folder: str, limit: int | None = None) -> list[str]:
        """Keys (paths relative to the dataset) of a folder's images, all or an even spread of `limit`."""
        paths = sorted(iter_image_files(self.data / folder))
        if limit is not None:
            paths = spread(paths, limit)
        return [path.relative_to(self.data).as_posix() for path in paths]

    def scores(self, keys: Sequence[str]) -> np.ndarray:
        """The model's score of each file."""
        records = self._scores.get_many(keys, self._score, chunk=max(1, len(keys)))
        return np.array([record["score"] for record in records])

    def looks(self, keys: Sequence[str]) -> np.ndarray:
        """`(N, 2)` plain-line looks (`model.screen`) of each file, on the model's own input pixels."""
        records = self._looks.get_many(keys, self._look, chunk=256)
        return np.array([[record["flat_share"], record["busy_rows"]] for record in records]).reshape(-1, 2)

    def features(self, keys: Sequence[str], line_read: LineRead | None = None) -> list[dict[str, Any]]:
        """The verifier's features of each file (read now where not cached); with `line_read`, of the
        better of the page's and the line's reading, as the verifier reads what the gate sends."""
        if line_read is None:
            return self._features.get_many(keys, self._read)
        if line_read not in self._line_features:
            read = line_read
            stem = f"{self.features_stem()}-line-psm{read.page_segmentation}-h{read.text_height}"
            stem += f"-g{read.min_glyphs}{'-skip' if read.skip_page else ''}-shape"
            self._line_features[line_read] = JsonLinesCache(self._out / f"{stem}.jsonl")
        return self._line_features[line_read].get_many(
            keys, lambda part: self._read(part, line_read=line_read)
        )

    def unread(self, keys: Sequence[str]) -> list[dict[str, Any]]:
        """The features the verifier gives each file as a picture in which nothing is read
        (`model.verifier.text_verifier.unread_features`); no engine runs, so nothing is cached."""
        from model.verifier.text_verifier import unread_features

        return [unread_features((self.data / key).read_bytes(), self.config.side).as_dict() for key in keys]

    def flattened(self, keys: Sequence[str]) -> list[dict[str, Any]]:
        """The verifier's features of each file read with its ground flattened alone
        (`model.verifier.panel_read`; read now where not cached)."""
        if self._flattened_cache is None:
            stem = f"{self.features_stem()}-flattened-b{GROUND_BLUR}-l{GROUND_LEVEL:g}"
            self._flattened_cache = JsonLinesCache(self._out / f"{stem}.jsonl")
        return self._flattened_cache.get_many(keys, lambda part: self._read_each(part, "flattened_features"))

    def layout(self, keys: Sequence[str]) -> list[dict[str, Any]]:
        """The features of the words the layout analysis finds in each file, none recognised
        (`TextVerifier.layout_features`; found now where not cached)."""
        if self._layout_cache is None:
            self._layout_cache = JsonLinesCache(self._out / f"{self.features_stem()}-layout.jsonl")
        return self._layout_cache.get_many(keys, lambda part: self._read_each(part, "layout_features"))

    def second(self, keys: Sequence[str], second: SecondRead) -> list[dict[str, Any]]:
        """The features of each file as the second reading's engine reads it (`TextVerifier.second_features`;
        read now where not cached). The cache is named by that engine's release, which includes the side it
        detects at."""
        if second not in self._second_caches:
            self._second_caches[second] = JsonLinesCache(self._out / f"{self.second_stem(second)}.jsonl")
        return self._second_caches[second].get_many(
            keys, lambda part: self._read_each(part, "second_features", second)
        )

    def second_stem(self, second: SecondRead) -> str:
        """`second-<engine release>-<side>`: what a cached reading by the second engine means (the pages',
        here; the sheets', `model.cascade_sheets.SheetReadings`)."""
        engine = self.verifier().second_verifier(second).engine.version()
        release = re.sub(r"[^0-9A-Za-z.]+", "-", engine).strip("-")
        return f"second-{release}-{second.side}"

    def _read_each(self, keys: list[str], method: str, *args: Any) -> list[dict[str, Any]]:
        """Each file through one of the verifier's `*_features` methods (with `args` after the bytes), in this
        process."""
        read = getattr(self.verifier(), method)
        rows = []
        for key in keys:
            rows.append(read((self.data / key).read_bytes(), *args).as_dict())
            self._progress.update()
        return rows

    def features_stem(self) -> str:
        """`features-<engine release>-<languages>-<side>-psm<k>-c<confidence>`: what a cached reading means
        (the engine's release, its language models and the confidence that counts a character as confidently
        read are part of it)."""
        config = self.config
        release = re.sub(r"[^0-9A-Za-z.]+", "-", self.engine_version()).strip("-")
        languages = re.sub(r"[^0-9A-Za-z]+", "-", config.languages)
        reading = f"{config.side}-psm{config.page_segmentation}-c{CONFIDENT_READ:g}"
        return f"features-{release}-{languages}-{reading}"

    def model_version(self) -> str:
        """The version of the model being screened with."""
        return str(self._load_scorer().model_version)

    def engine_version(self) -> str:
        """The OCR engine's version (the card records it: another version may read differently)."""
        return str(self.verifier().engine.version())

    def verifier(self) -> Any:
        """The text verifier (`TextVerifier`), started on first use."""
        if self._verifier is None:
            from model.verifier.text_verifier import TextVerifier

            self._verifier = TextVerifier(self.config)
        return self._verifier

    def _load_scorer(self) -> Any:
        if self._scorer is None:
            from model.scoring import Scorer

            self._scorer = Scorer.load(self.model_dir, device="cpu")
        return self._scorer

    def _score(self, keys: list[str]) -> list[dict[str, Any]]:
        from model.offline_score import score_paths

        paths = [self.data / key for key in keys]
        records = list(
            tqdm(score_paths(self._load_scorer(), paths), total=len(paths), desc="model", file=sys.stderr)
        )
        return [{"score": record["score"]} for record in records]

    def _look(self, keys: list[str]) -> list[dict[str, Any]]:
        from model.preprocess import preprocess_uint8

        size = self._load_scorer().input_size
        rows = plain_line_looks(
            np.stack([preprocess_uint8((self.data / key).read_bytes(), size) for key in keys])
        )
        return [{"flat_share": float(flat), "busy_rows": float(busy)} for flat, busy in rows]

    def _read(self, keys: list[str], line_read: LineRead | None = None) -> list[dict[str, Any]]:
        verifier = self.verifier()
        rows = []
        for key in keys:
            rows.append(verifier.features((self.data / key).read_bytes(), line_read=line_read).as_dict())
            self._progress.update()
        return rows


def photo_source(key: str) -> str:
    """A calibration photo's source: its file name without the kind and the number
    (`calib/other/photo-skimage-00012.jpg` -> `skimage`)."""
    return re.sub(r"-\d+\.\w+$", "", key.rsplit("/", 1)[-1]).split("-", 1)[-1]


def _sent_features(
    measured: Measurements,
    keys: list[str],
    scores: np.ndarray,
    send_from: float,
    *,
    gate: PlainLineGate | None,
    looks: np.ndarray,
) -> list[dict[str, Any] | None]:
    """Features for the files at or above `send_from` or that `gate` passes (read where needed, as the
    verifier reads them: the gate's with its line reading), None for the rest."""
    gated = gate.sends(looks) if gate is not None else np.zeros(len(keys), dtype=bool)
    sent_mask = (scores >= send_from) | gated
    sent = [key for key, send in zip(keys, sent_mask, strict=True) if send]
    by_key = _gate_aware_features(measured, sent, gate)
    return [by_key.get(key) for key in keys]


def _gate_aware_features(
    measured: Measurements, keys: list[str], gate: PlainLineGate | None
) -> dict[str, dict[str, Any]]:
    """The features of `keys` as the verifier reads them for a policy with `gate`."""
    if gate is None or gate.line_read is None:
        return dict(zip(keys, measured.features(keys), strict=True))
    gated = set(_passing(measured, gate, keys))
    page = [key for key in keys if key not in gated]
    line = [key for key in keys if key in gated]
    return {
        **dict(zip(page, measured.features(page), strict=True)),
        **dict(zip(line, measured.features(line, gate.line_read), strict=True)),
    }


def _rate(flags: np.ndarray) -> float:
    return float(flags.mean()) if len(flags) else float("nan")


def fit_and_calibrate(
    measured: Measurements,
    *,
    per_folder: int,
    shares: Sequence[float],
    alpha: float,
    budget_share: float,
    eval_per_folder: int | None = None,
    line_read: LineRead | None = DEFAULT_LINE_READ,
    gate_recall: float = DEFAULT_GATE_RECALL,
    min_confident: int = 0,
) -> dict[str, Any]:
    """Everything `alocc cascade fit` reports; see the module docstring."""
    from model.calibrate import conformal_threshold  # imports torch: not at `alocc --help` time

    # 1. The rules and the gate, on training families only.
    val_cards, val_other = measured.files(VAL_CARDS), measured.files(VAL_OTHER)
    rule = fit_rule_on(measured, val_cards, val_other)
    one_line = measured.files(TRAIN_ONE_LINE, per_folder)
    gate = PlainLineGate.fit(measured.looks(one_line), recall=gate_recall, line_read=line_read)
    gated_one_line = _passing(measured, gate, one_line)
    gated_other = [key for folder in TRAIN_OTHER for key in _passing(measured, gate, measured.files(folder))]
    gate_rule = fit_rule_on(
        measured,
        gated_one_line,
        gated_other,
        with_model=False,
        # Fitted on what the page reading of every gated picture says, products cut out on a flat ground
        # included: a picture the served reading skips (`LineRead.skip_page`) is one no rule fitted this
        # way flagged, on any set, and fitting on its empty reading would teach the rule that reading
        # little means a product, which costs the one-line cards that read little.
        line_read=None if line_read is None else dataclasses.replace(line_read, skip_page=False),
        # The drawing's shape is measured where the line is read.
        names=GATE_RULE_INPUTS if line_read is not None else RULE_INPUTS,
    )
    # Where the line is read, a line of glyphs read as nothing (a font the verifier cannot read) is weighed
    # on its shape by a rule of its own, fitted on the same pictures as the verifier sees them unread.
    gate_shape_rule = None if line_read is None else fit_shape_rule(measured, gated_one_line, gated_other)
    train_cards = measured.files(TRAIN_CARDS, per_folder) + one_line  # choosing weighs both designs
    card_scores = measured.scores(train_cards)
    by_key = _gate_aware_features(measured, train_cards, gate)
    card_features = [by_key[key] for key in train_cards]

    # 2. The share grid and the conformal threshold, on calibration photos.
    calib_keys = measured.files(CALIB)
    calib_scores = measured.scores(calib_keys)
    calib_looks = measured.looks(calib_keys)
    calib_gated = gate.sends(calib_looks)
    # A share the gate alone already spends leaves nothing to send by score: no point of the curve.
    grid = sorted({send_from_for_share(calib_scores, calib_gated, share) for share in shares} - {_NOTHING})
    if not grid:
        raise ValueError(f"the gate alone reads {_rate(calib_gated):.2%} of calibration photos: ask for more")
    calib_features = _sent_features(measured, calib_keys, calib_scores, grid[0], gate=gate, looks=calib_looks)

    # 3. Every grid point: calibrate, then measure on the training cards; choose on those alone.
    card_looks = measured.looks(train_cards)
    curve = []
    for send_from in grid:
        draft = CascadePolicy(
            send_from,
            rule,
            threshold=1.0,
            gate=gate,
            gate_rule=gate_rule,
            gate_shape_rule=gate_shape_rule,
            min_confident=min_confident,
        )
        calibrated = conformal_threshold(
            draft.cascade_scores(calib_scores, calib_features, calib_looks).astype(np.float32), alpha
        )
        policy = dataclasses.replace(draft, threshold=calibrated.threshold)
        card_flags = policy.cascade_scores(card_scores, card_features, card_looks) >= policy.threshold
        curve.append(
            CurvePoint(
                policy=policy,
                calib_share=_rate(policy.sends(calib_scores, calib_looks)),
                train_card_recall=_rate(card_flags),
                train_cards_sent=_rate(policy.sends(card_scores, card_looks)),
            )
        )
    chosen = choose_point(curve, budget_share, len(calib_keys))
    # The training family's one-line cards that fitted neither the gate nor its rule: the chosen point's
    # recall on a design the model never learned, measured apart from everything fitted on.
    fitted = set(one_line)
    held_out = [key for key in measured.files(TRAIN_ONE_LINE) if key not in fitted]
    held_scores, held_looks = measured.scores(held_out), measured.looks(held_out)
    held_features = _sent_features(
        measured, held_out, held_scores, chosen.policy.send_from, gate=gate, looks=held_looks
    )
    held_flags = (
        chosen.policy.cascade_scores(held_scores, held_features, held_looks) >= chosen.policy.threshold
    )

    # The rules' floor at the chosen point: what each would give on the training side.
    calib_sources = [photo_source(key) for key in calib_keys]
    floors = [
        floor_row(
            dataclasses.replace(chosen.policy, min_confident=floor),
            alpha,
            (calib_scores, calib_features, calib_looks, calib_sources),
            (card_scores, card_features, card_looks),
        )
        for floor in FLOOR_GRID
    ]

    # 4. Report every grid point on the evaluation families (the choice above did not look at them).
    evaluation = load_eval_folders(measured, grid[0], eval_per_folder, gate)
    return {
        "model_version": measured.model_version(),
        "verifier": {**vars(measured.config)},
        "alpha": alpha,
        "budget_share": budget_share,
        "engine_version": measured.engine_version(),
        "rule": rule.to_json(),
        # What each rule was fitted on, and the training cards the point was measured on.
        "fit": {
            "rule": {"cards": len(val_cards), "other": len(val_other), "folders": [VAL_CARDS, VAL_OTHER]},
            "gate_rule": {"one_line_cards": len(gated_one_line), "other": len(gated_other)},
            "gate_shape_rule": {
                "one_line_cards_unread": len(gated_one_line) if gate_shape_rule is not None else 0,
                "other_unread": len(gated_other) if gate_shape_rule is not None else 0,
            },
            "training_cards": len(train_cards),
            "gate_recall": gate_recall,
        },
        "held_out_one_line": {"cards": len(held_out), "recall": _rate(held_flags)},
        "gate_share_calib_photos": _rate(calib_gated),
        "calibration_photos": len(calib_keys),
        "chosen_send_from": chosen.policy.send_from,
        "min_confident": min_confident,
        "confidence_floor": floors,
        "curve": [{**point.as_json(), "eval": evaluate_policy(point.policy, evaluation)} for point in curve],
        "policy": chosen.policy.to_json(),
    }


def floor_row(
    policy: CascadePolicy,
    alpha: float,
    photos: tuple[np.ndarray, Sequence[dict[str, Any] | None], np.ndarray, list[str]],
    cards: tuple[np.ndarray, Sequence[dict[str, Any] | None], np.ndarray],
) -> dict[str, Any]:
    """`policy` (its floor, `min_confident`) calibrated on the calibration photos at `alpha`: the threshold,
    the training cards it catches, and per photo source how many reach the threshold the other sources set
    alone (`model.calibrate.left_out_flags`)."""
    from model.calibrate import conformal_threshold, left_out_flags  # imports torch

    photo_scores, photo_features, photo_looks, sources = photos
    calib = policy.cascade_scores(photo_scores, photo_features, photo_looks)
    threshold = conformal_threshold(calib.astype(np.float32), alpha).threshold
    card_scores, card_features, card_looks = cards
    caught = policy.cascade_scores(card_scores, card_features, card_looks) >= threshold
    left_out = left_out_flags(calib, sources, alpha)
    return {
        "min_confident": policy.min_confident,
        "threshold": float(threshold),
        "train_card_recall": _rate(caught),
        "train_cards_missed": int(np.sum(~caught)),
        "calib_flags_source_left_out": sum(left_out.values()),
        "left_out_flags": left_out,
    }


def _passing(measured: Measurements, gate: PlainLineGate, keys: list[str]) -> list[str]:
    return [key for key, passes in zip(keys, gate.sends(measured.looks(keys)), strict=True) if passes]


def fit_rule_on(
    measured: Measurements,
    cards: list[str],
    other: list[str],
    *,
    with_model: bool = True,
    line_read: LineRead | None = None,
    unread: bool = False,
    names: Sequence[str] = RULE_INPUTS,
) -> CascadeRule:
    """A logistic rule over `names`: `cards` against `other`, on model scores (unless not `with_model`:
    the rule then gives the score no weight) and verifier features (read with `line_read` too where given;
    with `unread`, as the verifier sees each picture when it reads nothing in it: `Measurements.unread`)."""
    keys = cards + other
    labels = np.array([True] * len(cards) + [False] * len(other))
    scores = measured.scores(keys) if with_model else np.full(len(keys), 0.5)  # logit(0.5) = 0
    rows = measured.unread(keys) if unread else measured.features(keys, line_read)
    rule = fit_rule(rule_inputs(scores, rows, names), labels, names=names)
    if with_model:
        return rule
    return dataclasses.replace(rule, weights=(0.0, *rule.weights[1:]))


def fit_shape_rule(measured: Measurements, cards: list[str], other: list[str]) -> CascadeRule:
    """The gate's shape rule (`CascadePolicy.gate_shape_rule`): `cards` against `other`, each as the verifier
    sees a picture it reads nothing in (`Measurements.unread`: the whole ground and the drawing's shape), the
    model's score given no weight. Training one-line cards are in fonts Tesseract reads; taking their reading
    away is what they would look like in one it cannot."""
    return fit_rule_on(measured, cards, other, with_model=False, unread=True, names=SHAPE_RULE_INPUTS)


_NOTHING = float(np.nextafter(1.0, 2.0))  # a send_from above every score: nothing is sent by score


def send_from_for_share(scores: np.ndarray, gated: np.ndarray, share: float) -> float:
    """The `send_from` at which the verifier reads `share` of these images in all: the gate's images plus
    the highest-scoring others. Where the gate alone reads more, nothing is sent by score (above 1)."""
    wanted = round(share * len(scores)) - int(gated.sum())
    rest = np.sort(scores[~gated])[::-1]
    if wanted <= 0 or not len(rest):
        return _NOTHING
    return float(rest[min(wanted, len(rest)) - 1])


def choose_point(curve: Sequence[CurvePoint], budget_share: float, calibration_photos: int) -> CurvePoint:
    """The largest share within the budget; the cheapest point if none fits. Ties in the scores can put a
    point a photo above its nominal share, so the budget allows one photo more."""
    slack = 1.0 / max(1, calibration_photos)
    within = [point for point in curve if point.calib_share <= budget_share + slack]
    if not within:
        return min(curve, key=lambda point: point.calib_share)
    return max(within, key=lambda point: point.calib_share)


@dataclass(frozen=True)
class CurvePoint:
    """One calibrated point of the verifier-share curve, measured on training cards."""

    policy: CascadePolicy
    calib_share: float  # share of calibration photos the verifier reads
    train_card_recall: float
    train_cards_sent: float

    def as_json(self) -> dict[str, float]:
        """The point's numbers (the rule is reported once, beside the curve)."""
        return {
            "send_from": self.policy.send_from,
            "threshold": self.policy.threshold,
            "verifier_share_calib_photos": self.calib_share,
            "train_card_recall": self.train_card_recall,
            "train_cards_sent": self.train_cards_sent,
        }


@dataclass(frozen=True)
class EvalFolder:
    """One evaluation folder, read once for every grid point: scores, the verifier's features, families."""

    folder: str
    cards: bool  # a folder of cards (report misses) or of other images (report flags)
    scores: np.ndarray
    looks: np.ndarray  # (N, 2) plain-line looks (`model.screen`)
    features: list[dict[str, Any] | None]  # read from the grid's lowest send_from up; None below it
    kinds: list[str]  # the family (card layout, photo kind) of each image


def load_eval_folders(
    measured: Measurements, read_from: float, per_folder: int | None, gate: PlainLineGate | None
) -> list[EvalFolder]:
    """The evaluation folders with what every policy at or above `read_from` (or sent by `gate`) needs."""
    from model.evaluate import load_subkind_manifest, subkind_of  # imports torch

    folders = []
    for folder in (*EVAL_CARDS, EVAL_OTHER):
        keys = measured.files(folder, per_folder)
        scores = measured.scores(keys)
        looks = measured.looks(keys)
        manifest = load_subkind_manifest(measured.data / folder)
        folders.append(
            EvalFolder(
                folder=folder,
                cards=folder in EVAL_CARDS,
                scores=scores,
                looks=looks,
                features=_sent_features(measured, keys, scores, read_from, gate=gate, looks=looks),
                kinds=[subkind_of(measured.data / key, measured.data / folder, manifest) for key in keys],
            )
        )
    return folders


def with_panel_reading(measured: Measurements, policy: CascadePolicy, folder: EvalFolder) -> EvalFolder:
    """`folder` with its features as the policy's verifier reads the images: where the policy has a panel
    reading, the score route's images (`CascadeDecisions.route`) whose page reading read nothing get
    `PanelRead.better` of it and their flattened reading."""
    panel = policy.panel_read
    if panel is None:
        return folder
    keys = measured.files(folder.folder)
    on_route = policy.score_routed(folder.scores, folder.looks)
    routed = [
        index
        for index, row in enumerate(folder.features)
        if row is not None and on_route[index] and panel.wanted(row)
    ]
    features = list(folder.features)
    for index, flat in zip(routed, measured.flattened([keys[i] for i in routed]), strict=True):
        features[index] = panel.better(features[index], flat)
    return dataclasses.replace(folder, features=features)


def evaluate_policy(policy: CascadePolicy, folders: Sequence[EvalFolder]) -> dict[str, Any]:
    """Misses per card family, flags per photo kind, and the verifier share, for one policy."""
    return family_rates(
        folders,
        [policy.cascade_scores(ev.scores, ev.features, ev.looks) >= policy.threshold for ev in folders],
        [policy.sends(ev.scores, ev.looks) for ev in folders],
    )


def family_rates(
    folders: Sequence[EvalFolder],
    flagged: Sequence[np.ndarray],
    sent: Sequence[np.ndarray] | None = None,
) -> dict[str, Any]:
    """Per folder and family: the share missed (card folders) or flagged (the others) with its exact 95%
    interval (`model.metrics.rate_interval`: what a family of a few hundred images can resolve), and where
    `sent` is given, the share the verifier read."""
    from model.metrics import rate_interval

    result: dict[str, Any] = {}
    for index, ev in enumerate(folders):
        wrong = ~flagged[index] if ev.cards else flagged[index]
        families: dict[str, dict[str, Any]] = {}
        for kind in sorted(set(ev.kinds)):
            mask = np.array([k == kind for k in ev.kinds])
            families[kind] = {
                "images": int(mask.sum()),
                "rate": _rate(wrong[mask]),
                "interval95": list(rate_interval(int(wrong[mask].sum()), int(mask.sum()))),
            }
            if sent is not None:
                families[kind]["verifier_share"] = _rate(sent[index][mask])
        result[ev.folder] = {
            "images": len(ev.scores),
            "rate": _rate(wrong),
            "interval95": list(rate_interval(int(wrong.sum()), len(wrong))),
            "measure": "missed" if ev.cards else "flagged",
            "families": families,
        }
        if sent is not None:
            result[ev.folder]["verifier_share"] = _rate(sent[index])
    return result


def register(subcommands: Any) -> None:
    """Attach `alocc cascade fit` to the root parser's subparsers."""
    from model.model_commands import add_cascade_command

    fit = add_cascade_command(
        subcommands,
        action="fit",
        action_help="fit the rule, measure the verifier-share curve, calibrate and evaluate",
        description=__doc__,
    )
    fit.add_argument("--data", type=Path, required=True, help="a dataset built by `alocc data build`")
    fit.add_argument("--out", type=Path, required=True, help="folder for caches and cascade-ENGINE.json")
    fit.add_argument("--model", help="checkpoint directory (default: the shipped default model)")
    fit.add_argument("--engine", choices=["tesserocr", "tesseract", "rapidocr", "ppocr"], default="tesserocr")
    fit.add_argument(
        "--languages",
        default=VerifierConfig.languages,
        help="Tesseract's language models, joined by + (default %(default)s)",
    )
    fit.add_argument("--per-folder", type=int, default=200, help="training images per folder for the rule")
    fit.add_argument(
        "--eval-per-folder", type=int, help="evaluation images per folder, an even spread (default: all)"
    )
    fit.add_argument("--alpha", type=float, default=0.003, help="target false-positive rate on photos")
    fit.add_argument(
        "--budget-share",
        type=float,
        default=DEFAULT_BUDGET_SHARE,
        help="the verifier's budget: its largest share of calibration photos (default %(default)s)",
    )
    fit.add_argument(
        "--seed-features",
        type=Path,
        nargs="*",
        default=[],
        help="`alocc verifier measure --out` files to reuse",
    )
    fit.add_argument("--shares", type=float, nargs="+", default=list(DEFAULT_SHARES), help="verifier shares")
    fit.add_argument(
        "--gate-recall",
        type=float,
        default=DEFAULT_GATE_RECALL,
        help="share of the training one-line cards the plain-line gate's bounds pass (default %(default)s)",
    )
    fit.add_argument(
        "--gate-reading",
        choices=["line", "page"],
        default="line",
        help="how the verifier reads what the plain-line gate sends: also the line alone "
        "(`model.verifier.line_read`), or the page only, as before (default %(default)s)",
    )
    fit.add_argument(
        "--min-confident",
        type=int,
        default=0,
        help="the main and parts rules' floor: a reading with fewer characters read confidently scores 0 "
        "(`CascadePolicy.min_confident`; the report's confidence_floor measures 0-4; default %(default)s)",
    )
    fit.set_defaults(handler=run_fit)


def run_fit(args: argparse.Namespace) -> int:
    """`alocc cascade fit`."""
    config = VerifierConfig(engine=args.engine, languages=args.languages)
    measured = Measurements(args.data, args.out, config, args.model)
    for seed in args.seed_features:
        measured.seed_features(seed)
    report = fit_and_calibrate(
        measured,
        per_folder=args.per_folder,
        shares=args.shares,
        alpha=args.alpha,
        budget_share=args.budget_share,
        eval_per_folder=args.eval_per_folder,
        line_read=DEFAULT_LINE_READ if args.gate_reading == "line" else None,
        gate_recall=args.gate_recall,
        min_confident=args.min_confident,
    )
    (args.out / f"cascade-{args.engine}.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_curve(report, args.out / f"cascade-curve-{args.engine}.png")
    print(format_curve(report))
    return 0


def plot_curve(report: dict[str, Any], path: Path) -> None:
    """Misses per card folder and flags of `eval/other` against the share of calibration photos read,
    with the budget and the chosen point: the curve the operating point is picked from."""
    import matplotlib

    matplotlib.use("Agg")  # headless
    import matplotlib.pyplot as plt

    curve = sorted(report["curve"], key=lambda point: point["verifier_share_calib_photos"])
    shares = [100 * point["verifier_share_calib_photos"] for point in curve]
    figure, (misses, flags) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    card_folders = [folder for folder, rates in curve[0]["eval"].items() if rates["measure"] == "missed"]
    for folder in card_folders:
        misses.plot(shares, [100 * p["eval"][folder]["rate"] for p in curve], marker="o", label=folder)
    misses.plot(
        shares,
        [100 * (1 - p["train_card_recall"]) for p in curve],
        marker="o",
        linestyle=":",
        label="training cards",
    )
    misses.set_ylabel("cards missed (%)")
    flags.plot(
        shares,
        [100 * p["eval"][EVAL_OTHER]["rate"] for p in curve],
        marker="o",
        label=EVAL_OTHER,
        color="black",
    )
    flags.set_ylabel("pictures flagged (%)")
    flags.set_xlabel("share of calibration photos the verifier reads (%)")
    chosen = 100 * next(
        p["verifier_share_calib_photos"] for p in curve if p["send_from"] == report["chosen_send_from"]
    )
    for axis in (misses, flags):
        axis.axvline(
            100 * report["budget_share"], color="tab:red", linestyle="--", linewidth=1, label="budget"
        )
        axis.axvline(chosen, color="tab:green", linewidth=4, alpha=0.25, label="chosen")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.suptitle(
        f"The verifier-share curve ({report['verifier']['engine']}, alpha {report['alpha']})", fontsize=10
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def format_curve(report: dict[str, Any]) -> str:
    """The curve as a table: one row per grid point, the chosen one marked."""
    held = report.get("held_out_one_line", {})
    lines = [
        f"cascade over {report['model_version']} with {report['verifier']['engine']}, "
        f"alpha {report['alpha']}; the gate reads {report['gate_share_calib_photos']:.2%} of calibration "
        f"photos, and the chosen point catches {held.get('recall', float('nan')):.1%} of the "
        f"{held.get('cards', 0)} training one-line cards that fitted nothing",
        "  send_from  share(calib)  threshold  train-recall | eval miss  check miss  eval-photo flag"
        "  share(eval photos)",
    ]
    for point in report["curve"]:
        ev = point["eval"]
        mark = "*" if point["send_from"] == report["chosen_send_from"] else " "
        lines.append(
            f"{mark} {point['send_from']:.4f}   {point['verifier_share_calib_photos']:>6.1%}      "
            f"{point['threshold']:.4f}   {point['train_card_recall']:>6.1%}     | "
            f"{ev['eval/target']['rate']:>6.1%}     {ev['check/target']['rate']:>6.1%}      "
            f"{ev['eval/other']['rate']:>6.2%}          {ev['eval/other']['verifier_share']:>6.1%}"
        )
    floors = report.get("confidence_floor", [])
    if floors:
        lines.append(
            f"the rules' floor at the chosen point (served: {report.get('min_confident', 0)}): "
            "min_confident  threshold  train cards missed  calibration photos flagged, source left out"
        )
        for row in floors:
            lead = ", ".join(f"{name} {count}" for name, count in row["left_out_flags"].items() if count)
            lines.append(
                f"  {row['min_confident']:>13}  {row['threshold']:.4f}  {row['train_cards_missed']:>18}  "
                f"{row['calib_flags_source_left_out']} ({lead or 'none'})"
            )
    return "\n".join(lines)
