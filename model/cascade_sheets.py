"""`alocc cascade sheets`: what the sheet route (`model.sheets`) would catch, measured before serving it.

The route decides without a read: a picture whose best straightened sheet one discriminator member scores at
or above `card_from` is a card. Three measurements, in the order the choice must be made:

1. **The bound, on calibration photos.** Every calibration photo (`calib/other`) is searched for sheets as
   the worker searches them, and its best sheet scored. `card_from` is the conformal bound at `--alpha` on
   those scores, raised, as the model's card band is (`model.cascade_card.with_card_band`), by the largest
   amount one calibration source's best photo has stood above all the others' (in logits): photos hold
   sheets too (book covers, screens, frames, signs), and a source of them the calibration never saw must
   still fall under it.
2. **The fit family.** `train/photographed` (TRAIN-family cards photographed in TRAIN-role scenes, which
   the model never trained on) caught at that bound; and each calibration source left out in turn, the
   bound set on the others, how many of its photos reach it.
3. **The report, on the evaluation families**: the share of every evaluation folder and family the route
   alone makes cards (missed cards are what it does not catch; on `eval/other`, the photos and products it
   would flag). What the served cascade does with the route is `alocc cascade evaluate`'s, once attached.

Best sheet scores are cached per model version, member and search in `--out`
(`sheet-scores-<version>-member<k>-<search digest>.jsonl`; about 8 ms a picture on two cores).
Writes `cascade-sheets.json` and prints the tables.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from model.cascade_card import check_calibration_photos, last_bound_step, raised_bound, with_union_bound
from model.cascade_fit import CALIB, JsonLinesCache, family_rates, load_eval_folders, photo_source
from model.errors import ConfigError
from model.sheets import SheetRoute, SheetSearch

if TYPE_CHECKING:
    from model.cascade import TextCascade
    from model.verifier.second_read import SecondRead

# The member that scores the sheets: the default ensemble's second, as for the quadrant route's corners. On
# the training family, at the served search and alpha 0.0005, it caught 60.8% of `train/photographed` at its
# bound; the whole ensemble 56.2%, member 0 (the 64-pixel one) 14.5%, member 2 28.5%; and one member costs a
# third of the ensemble's passes.
DEFAULT_SHEET_MEMBER = 1
FIT_FOLDER = "train/photographed"
DEFAULT_ALPHAS = (0.0005, 0.001)
_BATCH = 32


def _opencv_version() -> str:
    import cv2

    return str(cv2.__version__)


def search_digest(search: SheetSearch) -> str:
    """Eight hex digits naming a search and the OpenCV release that runs it (the cache's key)."""
    named = {"search": search.to_json(), "opencv": _opencv_version()}
    return hashlib.sha256(json.dumps(named, sort_keys=True).encode()).hexdigest()[:8]


class SheetScores:
    """The best sheet score of dataset files for one model, member and search, cached."""

    def __init__(
        self,
        data: Path,
        out: Path,
        model_dir: str | None,
        member: int | None = DEFAULT_SHEET_MEMBER,
        search: SheetSearch | None = None,
    ) -> None:
        """Sheets scored by the ensemble's `member` (`Scorer.member_d_x`), or the whole ensemble."""
        from model.scoring import Scorer  # imports torch

        self.data = data
        self.out = out
        self.member = member
        self.search = search or SheetSearch()
        self.scorer = Scorer.load(model_dir, device="cpu")
        self._cache = JsonLinesCache(out / f"{self.cache_stem()}.jsonl")

    def cache_stem(self) -> str:
        """`sheet-scores-<version>-member<k>-<search digest>`: what the cache's scores were measured with."""
        by = "" if self.member is None else f"-member{self.member}"
        return f"sheet-scores-{self.scorer.model_version}{by}-{search_digest(self.search)}"

    def get(self, keys: Sequence[str]) -> npt.NDArray[np.float64]:
        """The best sheet score of each file (0 where it holds no sheet)."""
        from tqdm import tqdm

        progress = tqdm(desc=f"sheets ({self.scorer.model_version})", unit="img", file=sys.stderr)
        records = self._cache.get_many(keys, lambda part: self._score(part, progress), chunk=_BATCH)
        progress.close()
        return np.array([record["sheet"] for record in records], dtype=np.float64)

    def _score(self, keys: list[str], progress: Any) -> list[dict[str, float]]:
        import torch

        from model.decode import QUADRANTS, decode_with_parts
        from model.sheets import best_sheet_scores

        # The worker's path: each picture decoded with its corners and sheets, the sheets scored as a batch.
        size = self.scorer.input_size
        decoded = [
            decode_with_parts((self.data / key).read_bytes(), size, sheets=self.search)[1 + QUADRANTS :]
            for key in keys
        ]
        sheets = torch.from_numpy(np.stack(decoded)).permute(0, 1, 4, 2, 3).contiguous()
        best = best_sheet_scores(self.scorer, sheets, self.member)
        progress.update(len(keys))
        return [{"sheet": float(value)} for value in best]


# Only sheets scoring from here up are read when measuring the sheet reading (its band starts above it):
# most pictures' best sheets score far below, and a read costs tens of milliseconds.
READ_FLOOR = 0.5
DEFAULT_READ_SHARES = (0.0025, 0.005, 0.01)
DEFAULT_READ_ALPHA = 0.0005


class SheetReadings:
    """What the verifier reads in each picture's best sheet (`TextVerifier.sheet_features`), for the
    pictures whose best sheet scores from `READ_FLOOR` up, cached beside the sheet scores; with `second`,
    what the second engine reads there (the sheet's second reading)."""

    def __init__(self, sheets: SheetScores, measured: Any, second: SecondRead | None = None) -> None:
        """`measured` (`model.cascade_fit.Measurements`) gives the verifier and its features' cache name."""
        self._sheets = sheets
        self._measured = measured
        self._second = second
        stem = sheets.cache_stem().replace("sheet-scores-", "sheet-readings-")
        reading = measured.features_stem() if second is None else measured.second_stem(second)
        self._cache = JsonLinesCache(sheets.out / f"{stem}-{reading}.jsonl")

    def engine_version(self) -> str:
        """The version of the engine that reads (the second engine's, with `second`)."""
        verifier = self._measured.verifier()
        engine = verifier.engine if self._second is None else verifier.second_verifier(self._second).engine
        return str(engine.version())

    def characters(self, keys: Sequence[str], scores: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The characters read (`TextFeatures.read_characters`) in each picture's best sheet; -1 where its
        best sheet scores under `READ_FLOOR` (not read)."""
        from tqdm import tqdm

        values = np.asarray(scores, dtype=np.float64).ravel()
        out = np.full(len(keys), -1.0)
        wanted = [i for i in range(len(keys)) if values[i] >= READ_FLOOR]
        progress = tqdm(desc="sheet readings", unit="img", file=sys.stderr)
        records = self._cache.get_many(
            [keys[i] for i in wanted], lambda part: self._read(part, progress), chunk=_BATCH
        )
        progress.close()
        for i, record in zip(wanted, records, strict=True):
            out[i] = float(record["read_characters"])
        return out

    def _read(self, keys: list[str], progress: Any) -> list[dict[str, Any]]:
        import torch

        from model.decode import QUADRANTS, decode_with_parts
        from model.sheets import best_sheets
        from model.verifier.text_verifier import SheetReading

        scorer, search = self._sheets.scorer, self._sheets.search
        size = scorer.input_size
        data = [(self._sheets.data / key).read_bytes() for key in keys]
        decoded = [decode_with_parts(item, size, sheets=search)[1 + QUADRANTS :] for item in data]
        pixels = torch.from_numpy(np.stack(decoded)).permute(0, 1, 4, 2, 3).contiguous()
        _, slots = best_sheets(scorer, pixels, self._sheets.member)
        verifier = self._measured.verifier()
        rows = []
        for item, slot in zip(data, slots, strict=True):
            features = verifier.sheet_features(item, SheetReading(search, size, int(slot), self._second))
            rows.append({"slot": int(slot), **features.as_dict()})
            progress.update()
        return rows


def _route_and_reading(
    route: SheetRoute, scores: npt.NDArray[np.float64], characters: npt.NDArray[np.float64]
) -> npt.NDArray[np.bool_]:
    """The pictures the route makes cards, with or without reading their best sheet."""
    return route.cards(scores) | route.read_cards(scores, characters)


def _raised_characters_bound(
    values: npt.NDArray[np.float64], sources: Sequence[str], alpha: float
) -> tuple[int, int, str]:
    """The characters bound at `alpha` on the calibration photos' counts (0 where not read), and that bound
    raised above the best photo of any source that reaches the bound set on the other sources alone, with
    the source that raised it ("" where none did): few photos are read, so one source of T-shirts or
    posters decides the tail, and a source like it that calibration never saw must still fall under it."""
    conformal = _characters_bound(values, alpha)
    names = np.asarray(list(sources))
    raised, lead = conformal, ""
    for name in sorted(set(names.tolist())):
        inside = names == name
        if inside.all():
            break  # one source: nothing to leave out
        top = float(values[inside].max(initial=0.0))
        if top >= _characters_bound(values[~inside], alpha, allow_max=True) and int(top) + 1 > raised:
            raised, lead = int(top) + 1, name
    return conformal, raised, lead


def with_sheet_second_read(
    cascade: TextCascade,
    calibration_scores: npt.ArrayLike,
    first_characters: npt.ArrayLike,
    second_characters: npt.ArrayLike,
    sources: Sequence[str],
    *,
    alpha: float,
    engine_version: str,
    share: float | None = None,
) -> TextCascade:
    """The cascade with the sheet's second reading (`SheetRoute.second_read`): the calibration photos whose
    best sheet the second engine reads (in the reading band, the first reading short of its count:
    `first_characters`; with `share`, also alone from the conformal bound at that share of their best
    sheet scores up to the band, `SheetRoute.second_from`) and what it reads in them
    (`second_characters`) set its count as the first reading's was (`_raised_characters_bound` at
    `alpha`). Its bound adds to the cascade's (a union bound, recorded on the card); the evaluation the
    card recorded no longer describes its decisions: dropped.

    Raises:
        ConfigError: the photos are not the ones the cascade was calibrated on, the cascade's sheet route
            does not read sheets (the second reading reads what the first leaves), or `share` does not
            reach under the reading band.
    """
    import dataclasses

    from model.verifier.second_read import SecondRead

    scores = np.asarray(calibration_scores, dtype=np.float64).ravel()
    check_calibration_photos(cascade, len(scores))
    route = cascade.policy.sheets
    if route is None or route.read_from is None or route.read_characters is None:
        raise ConfigError("the sheet's second reading needs the sheet reading (attach --sheet-read-share)")
    second_from = None
    if share is not None:
        from model.calibrate import conformal_threshold  # imports torch

        second_from = max(READ_FLOOR, float(conformal_threshold(scores.astype(np.float32), share).threshold))
        if second_from >= route.read_from:
            raise ConfigError(
                f"the second engine's band from {second_from:.5f} (share {share}) does not reach under the "
                f"sheet reading's {route.read_from:.5f}: choose a larger share"
            )
    first = np.asarray(first_characters, dtype=np.float64).ravel()
    second = np.asarray(second_characters, dtype=np.float64).ravel()
    probe = dataclasses.replace(route, second_read=SecondRead(1), second_from=second_from)
    alone = probe.second_reads(scores) & ~route.reads(scores)
    read = alone | (route.reads(scores) & (first < route.read_characters))
    if np.any(read & (second < 0)):
        raise ConfigError("a calibration photo the second engine reads has no second reading")
    values = np.where(read, np.maximum(second, 0.0), 0.0)
    conformal, raised, lead = _raised_characters_bound(values, sources, alpha)
    reading = dataclasses.replace(
        route, second_read=SecondRead(raised, engine_version=engine_version), second_from=second_from
    )
    policy = dataclasses.replace(cascade.policy, sheets=reading)
    record = {
        "calibration_photos": len(scores),
        "engine_version": engine_version,
        "read_share": share,
        "second_from": second_from,
        "calibration_read_alone": int(alone.sum()),
        "conformal_min_characters": conformal,
        "min_characters": raised,
        "raised_by_source": lead,
        "calibration_read": int(read.sum()),
        "calibration_flagged": int(np.sum(read & (second >= raised))),
    }
    # Its bound adds to the largest the card records so far (a second attach replaces, not adds to, it).
    after = last_bound_step(cascade, excluding="sheet_second_read")
    return with_union_bound(cascade, policy, "sheet_second_read", after=after, alpha=alpha, record=record)


def _characters_bound(values: npt.NDArray[np.float64], alpha: float, *, allow_max: bool = False) -> int:
    """One more than the conformal bound at `alpha` on whole-number counts (at least 1); with `allow_max`, a
    sample too small for `alpha` gives one more than its largest count."""
    from model.calibrate import conformal_threshold  # imports torch

    bound = conformal_threshold(values.astype(np.float32), alpha, allow_max=allow_max)
    return max(1, int(np.floor(bound.rank_score)) + 1)


def reading_bound(
    calibration_scores: npt.ArrayLike,
    calibration_characters: npt.ArrayLike,
    sources: Sequence[str],
    card_from: float,
    *,
    share: float,
    alpha: float,
) -> dict[str, Any]:
    """The sheet reading's band and its bound on calibration photos.

    `read_from` is the conformal bound at `share` on their best sheet scores (about that share of photos
    like them has its best sheet read: the reading's budget), at least `READ_FLOOR`. The characters bound
    is one more than the conformal bound at `alpha` on the characters read in their sheets (0 for a photo
    whose sheet is not read), raised as the route's own bound is (`model.cascade_card.raised_bound`): above
    the best photo of any calibration source that reaches the bound set on the other sources alone. Few
    photos fall in the band (tens of thousands), so one source of T-shirts or posters decides the tail, and
    a source like it that calibration never saw must still fall under the bound."""
    from model.calibrate import conformal_threshold  # imports torch

    scores = np.asarray(calibration_scores, dtype=np.float64).ravel()
    characters = np.asarray(calibration_characters, dtype=np.float64).ravel()
    read_from = max(READ_FLOOR, float(conformal_threshold(scores.astype(np.float32), share).threshold))
    if read_from >= card_from:
        raise ConfigError(
            f"a reading band from {read_from:.5f} (share {share}) does not lie below the route's bound "
            f"{card_from:.5f}: choose a larger share"
        )
    read = (scores >= read_from) & (scores < card_from)
    if np.any(read & (characters < 0)):
        raise ConfigError("a calibration photo in the reading band has no reading (its sheet was not read)")
    values = np.where(read, np.maximum(characters, 0.0), 0.0)
    conformal, raised, lead = _raised_characters_bound(values, sources, alpha)
    return {
        "read_share": share,
        "read_from": read_from,
        "conformal_read_characters": conformal,
        "read_characters": raised,
        "raised_by_source": lead,
        "calibration_read": int(read.sum()),
        "calibration_flagged": int(np.sum(read & (characters >= raised))),
    }


def with_sheet_reading(
    cascade: TextCascade,
    calibration_scores: npt.ArrayLike,
    calibration_characters: npt.ArrayLike,
    sources: Sequence[str],
    *,
    share: float,
    alpha: float,
) -> TextCascade:
    """The cascade with the sheet route's reading (`reading_bound`). Its false-positive bound adds to the
    cascade's (a union bound, recorded on the card); the evaluation the card recorded no longer describes
    its decisions, so it is dropped.

    Raises:
        ConfigError: the photos are not the ones the cascade was calibrated on, or the cascade has no sheet
            route (the reading is its band under the route's bound).
    """
    import dataclasses

    scores = np.asarray(calibration_scores, dtype=np.float64).ravel()
    check_calibration_photos(cascade, len(scores))
    route = cascade.policy.sheets
    if route is None:
        raise ConfigError("the sheet reading needs a cascade with the sheet route (attach --sheet-alpha)")
    bound = reading_bound(scores, calibration_characters, sources, route.card_from, share=share, alpha=alpha)
    reading = dataclasses.replace(
        route, read_from=bound["read_from"], read_characters=bound["read_characters"]
    )
    policy = dataclasses.replace(cascade.policy, sheets=reading)
    record = {"calibration_photos": len(scores), **bound}
    return with_union_bound(cascade, policy, "sheet_reading", after="sheet_route", alpha=alpha, record=record)


def highest_photos(scores: npt.ArrayLike, keys: Sequence[str], count: int = 3) -> list[dict[str, Any]]:
    """The `count` calibration photos whose best sheets score highest, highest first, with their sources.
    At the route's alpha the bound is one or two of them and its source margin is their source's lead, so
    a search that lifts one photo's sheet moves the bound for every card (docs/CASCADE.md, "What else was
    measured for the route"): the report names them, so that a person comparing searches sees it."""
    values = np.asarray(scores, dtype=np.float64).ravel()
    order = np.argsort(-values, kind="stable")[:count]
    return [{"key": keys[i], "source": photo_source(keys[i]), "sheet": float(values[i])} for i in order]


def with_sheet_route(
    cascade: TextCascade,
    calibration_scores: npt.ArrayLike,
    sources: Sequence[str],
    alpha: float,
    *,
    member: int | None = DEFAULT_SHEET_MEMBER,
    search: SheetSearch | None = None,
) -> TextCascade:
    """The cascade with the sheet route at `alpha` (`model.cascade_card.raised_bound` on the calibration
    photos' best sheet scores). Its false-positive bound adds to the cascade's (a union bound, recorded on
    the card); the evaluation the card recorded no longer describes its decisions, so it is dropped.

    Raises:
        ConfigError: the photos are not the ones the cascade was calibrated on, or the cascade has no
            quadrant route (the sheets are decoded after its corners).
    """
    import dataclasses

    scores = np.asarray(calibration_scores, dtype=np.float64).ravel()
    check_calibration_photos(cascade, len(scores))
    if cascade.policy.parts_send_from is None:
        raise ConfigError("the sheet route needs a cascade with the quadrant route (attach --quadrants)")
    bound = raised_bound(scores, sources, alpha)
    route = SheetRoute(card_from=bound["card_from"], member=member, search=search or SheetSearch())
    policy = dataclasses.replace(cascade.policy, sheets=route)
    record = {"calibration_photos": len(scores), **bound, "opencv": _opencv_version()}
    # A new route has no reading yet: an earlier reading's record would describe another route.
    earlier = {name: value for name, value in cascade.calibration.items() if name != "sheet_reading"}
    cascade = dataclasses.replace(cascade, calibration=earlier)
    return with_union_bound(cascade, policy, "sheet_route", after="card_band", alpha=alpha, record=record)


def measure(
    data: Path,
    out: Path,
    model_dir: str | None,
    alphas: Sequence[float],
    member: int | None,
    *,
    read_shares: Sequence[float] = (),
    read_alpha: float = DEFAULT_READ_ALPHA,
) -> dict[str, Any]:
    """The three measurements of the module docstring, at each alpha; with `read_shares`, the sheet reading
    at each share (under the route's bound at the first alpha) too."""
    from model.calibrate import left_out_flags  # imports torch
    from model.cascade_fit import Measurements, served_verifier

    sheets = SheetScores(data, out, model_dir, member)
    measured = Measurements(data, out, served_verifier(model_dir), model_dir)
    calib = measured.files(CALIB)
    fit = measured.files(FIT_FOLDER)
    if not calib or not fit:
        raise ConfigError(
            f"{data} lacks {CALIB} or {FIT_FOLDER}: build it with `alocc data build` (alocc-data-10 or later)"
        )
    sources = [photo_source(key) for key in calib]
    calib_scores, fit_scores = sheets.get(calib), sheets.get(fit)
    folders = load_eval_folders(measured, 1.1, None, None)  # model scores and kinds; nothing read
    folder_scores = [sheets.get(measured.files(folder.folder)) for folder in folders]
    rows: list[dict[str, Any]] = []
    for alpha in alphas:
        bound = raised_bound(calib_scores, sources, alpha)
        route = SheetRoute(card_from=bound["card_from"], member=member)
        rows.append(
            {
                "alpha": alpha,
                **bound,
                "fit_caught": float(np.mean(route.cards(fit_scores))),
                "fit_caught_at_conformal_bound": float(np.mean(fit_scores >= bound["conformal_bound"])),
                "left_out_flags": left_out_flags(calib_scores, sources, alpha),
                "route_alone": family_rates(folders, [route.cards(scores) for scores in folder_scores]),
            }
        )
    readings = []
    if read_shares:
        reader = SheetReadings(sheets, measured)
        calib_chars, fit_chars = reader.characters(calib, calib_scores), reader.characters(fit, fit_scores)
        folder_chars = [
            reader.characters(measured.files(folder.folder), scores)
            for folder, scores in zip(folders, folder_scores, strict=True)
        ]
        card_from = float(rows[0]["card_from"])
        for share in read_shares:
            bound = reading_bound(
                calib_scores, calib_chars, sources, card_from, share=share, alpha=read_alpha
            )
            route = SheetRoute(
                card_from,
                member,
                read_from=float(bound["read_from"]),
                read_characters=int(bound["read_characters"]),
            )
            caught = functools.partial(_route_and_reading, route)

            readings.append(
                {
                    **bound,
                    "alpha": read_alpha,
                    "card_from": card_from,
                    "fit_read": float(np.mean(route.reads(fit_scores))),
                    "fit_caught": float(np.mean(caught(fit_scores, fit_chars))),
                    "route_and_reading": family_rates(
                        folders, [caught(q, c) for q, c in zip(folder_scores, folder_chars, strict=True)]
                    ),
                }
            )
    return {
        "model_version": sheets.scorer.model_version,
        "member": member,
        "search": sheets.search.to_json(),
        "opencv": _opencv_version(),
        "calibration_photos": len(calib),
        "fit_folder": FIT_FOLDER,
        "fit_cards": len(fit),
        "highest_calibration_photos": highest_photos(calib_scores, calib),
        "rows": rows,
        "readings": readings,
    }


def format_tables(report: dict[str, Any]) -> str:
    """The bound and the fit family per alpha, then each evaluation family's share made a card."""
    lines = [
        f"sheet route over {report['model_version']} (member {report['member']}, OpenCV "
        f"{report['opencv']}), bounded on {report['calibration_photos']} calibration photos",
        "| alpha | conformal bound | source margin (logits) | card_from | train/photographed caught "
        "| (at the bare bound) | calibration photos reaching a bound set without their source |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["rows"]:
        left_out = ", ".join(f"{name} {count}" for name, count in row["left_out_flags"].items() if count)
        lines.append(
            f"| {row['alpha']} | {row['conformal_bound']:.5f} | {row['source_margin_logits']:.2f} | "
            f"{row['card_from']:.5f} | {row['fit_caught']:.1%} | "
            f"{row['fit_caught_at_conformal_bound']:.1%} | {left_out or 'none'} |"
        )
    highest = report.get("highest_calibration_photos", [])
    if highest:
        lines.append(
            "calibration photos with the highest best sheets (the bound is one or two of them): "
            + ", ".join(f"{photo['key']} {photo['sheet']:.5f}" for photo in highest)
        )
    columns = [f"alpha {row['alpha']}" for row in report["rows"]]
    lines += _family_table(report["rows"], "route_alone", "the route alone makes cards of", columns)
    return "\n".join(lines)


def _family_table(
    rows: Sequence[dict[str, Any]], key: str, caption: str, columns: Sequence[str]
) -> list[str]:
    """A table, after a blank line, with one line per evaluation folder and family: the share of it that
    each row's `key` rates (`family_rates`) make cards of, under the row's column name."""
    lines = [
        "",
        f"| folder / family | images | {caption}: " + " | ".join(columns) + " |",
        "| --- | --- | " + " | ".join("---" for _ in columns) + " |",
    ]
    for folder, result in rows[0][key].items():
        for family in ["all", *result["families"]]:
            cells = []
            for row in rows:
                counts = row[key][folder]
                counts = counts if family == "all" else counts["families"][family]
                share = 1.0 - counts["rate"] if result["measure"] == "missed" else counts["rate"]
                cells.append(f"{share:.1%}")
            images = result["images"] if family == "all" else result["families"][family]["images"]
            lines.append(f"| {folder} / {family} | {images} | " + " | ".join(cells) + " |")
    return lines


def format_readings(report: dict[str, Any]) -> str:
    """The sheet reading per read share: its band and bound, the fit family, then the evaluation families
    the route and the reading together make cards of."""
    readings = report.get("readings") or []
    if not readings:
        return ""
    lines = [
        f"sheet reading under the route's bound {readings[0]['card_from']:.5f} (characters bound at alpha "
        f"{readings[0]['alpha']})",
        "| read share | read_from | characters (conformal; raised by) | calibration photos read | flagged "
        "| train/photographed read | caught (route + reading) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    photos = report["calibration_photos"]
    for row in readings:
        lines.append(
            f"| {row['read_share']} | {row['read_from']:.5f} | {row['read_characters']} "
            f"({row['conformal_read_characters']}; {row['raised_by_source'] or 'none'}) | "
            f"{row['calibration_read']} ({row['calibration_read'] / photos:.2%}) | "
            f"{row['calibration_flagged']} | "
            f"{row['fit_read']:.1%} | {row['fit_caught']:.1%} |"
        )
    columns = [f"share {row['read_share']}" for row in readings]
    lines += _family_table(readings, "route_and_reading", "route + reading make cards of", columns)
    return "\n".join(lines)


def register(subcommands: Any) -> None:
    """Attach `alocc cascade sheets` to the root parser's subparsers."""
    from model.model_commands import add_cascade_measurement

    parser = add_cascade_measurement(
        subcommands,
        action="sheets",
        action_help="measure the sheet route (notices photographed in a scene) before serving it",
        description=__doc__,
        out_help="folder for caches and the JSON report",
    )
    parser.add_argument(
        "--alpha",
        type=float,
        nargs="+",
        default=list(DEFAULT_ALPHAS),
        help="the route's target false-positive rates on calibration photos (default %(default)s)",
    )
    parser.add_argument(
        "--member",
        type=int,
        default=DEFAULT_SHEET_MEMBER,
        help="the ensemble member that scores the sheets (default %(default)s; -1: the whole ensemble)",
    )
    parser.add_argument(
        "--read-shares",
        type=float,
        nargs="*",
        default=list(DEFAULT_READ_SHARES),
        help="measure the sheet reading with these shares of calibration photos read (default %(default)s; "
        "none: the route alone)",
    )
    parser.add_argument(
        "--read-alpha",
        type=float,
        default=DEFAULT_READ_ALPHA,
        help="the sheet reading's target false-positive rate on calibration photos (default %(default)s)",
    )
    parser.set_defaults(handler=run_sheets)


def run_sheets(args: argparse.Namespace) -> int:
    """`alocc cascade sheets`."""
    member = None if args.member < 0 else args.member
    report = measure(
        args.data,
        args.out,
        args.model,
        args.alpha,
        member,
        read_shares=args.read_shares,
        read_alpha=args.read_alpha,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cascade-sheets.json").write_text(json.dumps(report, indent=1) + "\n")
    print(format_tables(report))
    readings = format_readings(report)
    if readings:
        print("\n" + readings)
    return 0
