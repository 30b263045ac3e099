"""The sheet route: a notice photographed in a scene, found by its four edges and straightened for the model.

Some shops upload a photo of a printed notice (pinned to a wall, held up, lying on a counter) instead of the
notice itself. The model scores the whole picture like the photograph it mostly is, and at the sizes shops
upload, the notice's text is a few pixels high: the verifier reads almost nothing in it (`check/photographed`:
97% missed by the verifier alone, 99% by the model). Straightened and cut out, the same notice is a card
again, and the model knows cards.

`find_sheets` looks for such sheets the way a document scanner does: colour edges (a bilateral filter keeps a
sheet's border and smooths the scene's texture), closed a little and framed by the picture's border (a notice
cut by the frame is then closed along it), and the convex hulls of their contours of a plausible size, each
approximated by four corners (or by its tightest rotated rectangle where it nearly fills one).
`sheet_pixels` straightens the largest `slots` of them into the model's input: the centre square of each
sheet flattened, as `model.decode` cuts a picture's.

What decides is the model (`model.cascade.SheetRoute`): one discriminator member's score of the best sheet,
against a bound set on calibration photos, which hold sheets too (book covers, screens, frames) that the model
scores as the photographs they are.

Everything here works on the picture resized to `SheetSearch.work_side` on its long side, so the cost is
bounded whatever the upload's size: about 4-7 ms of one core per picture at 256 pixels on the development
machine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from model.decode import long_side_resize
from model.verifier.second_read import SecondRead

# OpenCV would start a thread pool per process as wide as the machine; the worker's decode processes already
# run one picture per thread, so more threads would only contend for the same cores.
_CV_THREADS = 1


def _cv2() -> Any:
    import cv2

    cv2.setNumThreads(_CV_THREADS)
    return cv2


@dataclass(frozen=True)
class SheetSearch:
    """How sheets are looked for; recorded on the model's card, so that a version names the search."""

    work_side: int = 256  # the picture's long side while searching, and what the sheets are cut from
    canny_low: int = 30  # Canny's hysteresis thresholds on each colour channel (0-255)
    canny_high: int = 90
    closings: tuple[int, ...] = (0, 3, 5)  # edge maps closed by these square kernels (0: as found)
    min_area: float = 0.10  # a sheet's hull covers this share of the picture at least...
    max_area: float = 0.85  # ...and at most this (the whole frame is not a sheet in it)
    rectangularity: float = 0.85  # a hull that is not 4 corners must fill this much of its rotated rectangle
    slots: int = 4  # the largest sheets kept per picture (the rest are smaller copies or scene)

    def __post_init__(self) -> None:
        if self.work_side < 32 or self.slots < 1:
            raise ValueError("a sheet search needs a work side of at least 32 pixels and one slot")
        if not 0 < self.min_area < self.max_area <= 1:
            raise ValueError("sheet areas must satisfy 0 < min_area < max_area <= 1")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready record."""
        record = asdict(self)
        record["closings"] = list(self.closings)
        return record

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> SheetSearch:
        """The inverse of `to_json`."""
        fields = dict(record)
        fields["closings"] = tuple(int(k) for k in fields.get("closings", cls.closings))
        return cls(**fields)


# Two corners closer than this (pixels at the work side) make two hulls the same sheet.
_SAME_SHEET_PX = 6.0


def _ordered(points: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Four corners as top left, top right, bottom right, bottom left."""
    corners = np.asarray(points, dtype=np.float32).reshape(4, 2)
    total, difference = corners.sum(axis=1), np.diff(corners, axis=1).ravel()
    return np.array(
        [
            corners[np.argmin(total)],
            corners[np.argmin(difference)],
            corners[np.argmax(total)],
            corners[np.argmax(difference)],
        ],
        dtype=np.float32,
    )


def _edge_maps(rgb: npt.NDArray[np.uint8], search: SheetSearch) -> list[npt.NDArray[np.uint8]]:
    """The edge maps contours are taken from, one per closing, each with the picture's border drawn on it: a
    sheet cut by the frame is then closed along it (a contour that touches nothing is the same either way)."""
    cv2 = _cv2()
    smooth = cv2.bilateralFilter(rgb, 7, 50, 7)
    edges = np.max([cv2.Canny(smooth[..., c], search.canny_low, search.canny_high) for c in range(3)], axis=0)
    maps = []
    for kernel in search.closings:
        closed = (
            edges.copy()
            if kernel == 0
            else cv2.morphologyEx(edges, cv2.MORPH_CLOSE, np.ones((kernel, kernel)))
        )
        closed[0, :] = closed[-1, :] = closed[:, 0] = closed[:, -1] = 255
        maps.append(closed)
    return maps


def find_sheets(
    rgb: npt.NDArray[np.uint8], search: SheetSearch | None = None
) -> list[npt.NDArray[np.float32]]:
    """The sheets in an `(H, W, 3)` uint8 picture (already at the work size): `(4, 2)` corners (x, y; top
    left, top right, bottom right, bottom left), the largest first, at most `search.slots`."""
    cv2 = _cv2()
    search = search or SheetSearch()
    height, width = rgb.shape[:2]
    area = float(height * width)
    low, high = search.min_area * area, search.max_area * area
    found: list[tuple[float, npt.NDArray[np.float32]]] = []
    for edge_map in _edge_maps(np.ascontiguousarray(rgb), search):
        contours, _ = cv2.findContours(edge_map, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        for contour in contours:
            _, _, box_w, box_h = cv2.boundingRect(contour)
            if box_w * box_h < low:  # cheap first: most contours are the scene's small texture
                continue
            hull = cv2.convexHull(contour)
            hull_area = float(cv2.contourArea(hull))
            if not low <= hull_area <= high:
                continue
            approximated = cv2.approxPolyDP(hull, 0.03 * cv2.arcLength(hull, True), True)
            if len(approximated) == 4:
                corners = _ordered(approximated)
            else:
                corners = _ordered(cv2.boxPoints(cv2.minAreaRect(hull)))
                if hull_area < search.rectangularity * float(cv2.contourArea(corners.reshape(-1, 1, 2))):
                    continue
            corners[:, 0] = corners[:, 0].clip(0, width - 1)
            corners[:, 1] = corners[:, 1].clip(0, height - 1)
            found.append((hull_area, corners))
    found.sort(key=lambda item: -item[0])
    kept: list[npt.NDArray[np.float32]] = []
    for _, corners in found:
        if all(float(np.abs(corners - other).max()) > _SAME_SHEET_PX for other in kept):
            kept.append(corners)
            if len(kept) == search.slots:
                break
    return kept


def straighten(rgb: npt.NDArray[np.uint8], corners: npt.ArrayLike, size: int) -> npt.NDArray[np.uint8]:
    """`(size, size, 3)` uint8: the centre square of the sheet at `corners` once flattened to its own width
    and height (the square `model.decode` would cut from it as a picture), warped straight to the model's
    input in one bicubic pass (at the work side a sheet is at most a few times the input's size)."""
    quad = np.asarray(corners, dtype=np.float32).reshape(4, 2)
    sheet_w, sheet_h = _sides(quad)
    side = max(1.0, min(sheet_w, sheet_h))
    left, top = (sheet_w - side) / 2, (sheet_h - side) / 2
    # The flattened sheet's corners, placed so that its centre square lands on [0, size) x [0, size).
    flat = np.array([[0, 0], [sheet_w, 0], [sheet_w, sheet_h], [0, sheet_h]], dtype=np.float32)
    target = ((flat - np.array([left, top], dtype=np.float32)) * (size / side)).astype(np.float32)
    return _warp(rgb, quad, target, (size, size))


def _sides(quad: npt.NDArray[np.float32]) -> tuple[float, float]:
    """A sheet's width and height: the longer of its two opposite sides each."""
    width = max(float(np.linalg.norm(quad[1] - quad[0])), float(np.linalg.norm(quad[2] - quad[3])))
    height = max(float(np.linalg.norm(quad[3] - quad[0])), float(np.linalg.norm(quad[2] - quad[1])))
    return width, height


def _warp(
    rgb: npt.NDArray[np.uint8],
    quad: npt.NDArray[np.float32],
    target: npt.NDArray[np.float32],
    size: tuple[int, int],
) -> npt.NDArray[np.uint8]:
    """`rgb`'s quadrilateral `quad` warped onto `target` in a `size` (width, height) picture, bicubic."""
    warped = _cv2().warpPerspective(
        np.ascontiguousarray(rgb),
        _cv2().getPerspectiveTransform(quad, target),
        size,
        flags=_cv2().INTER_CUBIC,
        borderMode=_cv2().BORDER_REPLICATE,
    )
    return np.asarray(warped, dtype=np.uint8)


def flat_sheet(rgb: npt.NDArray[np.uint8], corners: npt.ArrayLike, long_side: int) -> npt.NDArray[np.uint8]:
    """The whole sheet at `corners` flattened to its own width and height, scaled so its long side is
    `long_side` (bicubic): what the verifier reads, where `straighten` cuts the model's square."""
    quad = np.asarray(corners, dtype=np.float32).reshape(4, 2)
    sheet_w, sheet_h = _sides(quad)
    scale = long_side / max(sheet_w, sheet_h, 1.0)
    width, height = max(1, round(sheet_w * scale)), max(1, round(sheet_h * scale))
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    return _warp(rgb, quad, target, (width, height))


def sheet_to_read(
    rgb: npt.NDArray[np.uint8], slot: int, search: SheetSearch, long_side: int
) -> Image.Image | None:
    """The sheet in `slot` of a work-size picture (`model.decode.decode_sheet_picture`) flattened for the
    verifier (`flat_sheet`), or None where the picture holds no sheet there. The search is run again: it is
    deterministic, and a few milliseconds for the few pictures read are cheaper than sending every
    picture's corners along with its pixels."""
    try:
        sheets = find_sheets(rgb, search)
        if not 0 <= slot < len(sheets):
            return None
        return Image.fromarray(flat_sheet(rgb, sheets[slot], long_side), "RGB")
    except _cv2().error:
        return None


def work_picture(image: Image.Image, search: SheetSearch) -> npt.NDArray[np.uint8]:
    """The RGB picture resized so its long side is `search.work_side`, as an `(H, W, 3)` uint8 array."""
    return np.asarray(long_side_resize(image, search.work_side).convert("RGB"), dtype=np.uint8)


def sheet_pixels(image: Image.Image, size: int, search: SheetSearch | None = None) -> npt.NDArray[np.uint8]:
    """`(slots, size, size, 3)` uint8: the picture's sheets straightened (`find_sheets`, `straighten`), the
    largest first; slots with no sheet are all zero, which `is_empty_slot` tells apart (a straightened sheet
    is never black in every channel of every pixel: it has a border, and a card on it)."""
    search = search or SheetSearch()
    rgb = work_picture(image, search)
    out = np.zeros((search.slots, size, size, 3), dtype=np.uint8)
    failure = _cv2().error
    # A picture OpenCV cannot search (or a sheet it cannot warp) holds no sheet for the route: the picture
    # itself decoded, and the rest of the cascade decides it as it would without the route. An odd picture
    # must not cost the event its decision.
    try:
        sheets = find_sheets(rgb, search)
    except failure:
        return out
    for slot, corners in enumerate(sheets):
        try:
            out[slot] = straighten(rgb, corners, size)
        except failure:
            continue
    return out


def is_empty_slot(pixels: Any) -> npt.NDArray[np.bool_]:
    """`(N,)` which of `(N, ...)` uint8 sheet slots hold no sheet (all zero); numpy or torch."""
    array = pixels.cpu().numpy() if hasattr(pixels, "cpu") else np.asarray(pixels)
    return np.asarray(~array.reshape(len(array), -1).any(axis=1), dtype=bool)


@dataclass(frozen=True)
class SheetRoute:
    """The sheet route as a cascade serves it: a picture whose best sheet (`sheet_pixels`), scored by the
    model (by its discriminator `member`, or the whole ensemble), reaches `card_from` is a card without a
    read. `card_from` is a bound on calibration photos (`model.cascade_sheets.with_sheet_route`).

    With the sheet reading (`read_from`, `read_characters`): a picture whose best sheet scores from
    `read_from` up to `card_from` has that sheet read, flattened (`sheet_to_read`); it is a card where the
    verifier reads at least `read_characters` characters in it (`TextFeatures.read_characters`). A notice
    photographed in a scene has its text a few pixels high in the picture, and the model's score of its
    straightened sheet is often high without reaching the bound calibration photos set; flattened to the
    verifier's size, the same text is read (`model.cascade_sheets.with_sheet_reading` sets both values).

    With the sheet's second reading (`second_read`): a best sheet in the reading band in which the verifier
    reads fewer than `read_characters` characters is read again by the second engine (PP-OCRv6 tiny), and is
    a card where that engine reads at least `second_read.min_characters` (`second_cards`). Tesseract reads
    a photographed notice's small, skewed print poorly; PP-OCRv6 reads many of them, and next to nothing in
    the textures and screens that make calibration photos' sheets score high
    (`model.cascade_sheets.with_sheet_second_read` sets its count). Where `second_from` is set (under
    `read_from`), the second engine alone also reads the best sheets scoring from there up to `read_from`:
    Tesseract's count would have to rise over the photos of that lower band, the second engine's not."""

    card_from: float
    member: int | None = None
    search: SheetSearch = SheetSearch()
    read_from: float | None = None
    read_characters: int | None = None
    second_read: SecondRead | None = None
    second_from: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.card_from) and 0.0 < self.card_from < 1.0):
            raise ValueError("the sheet route's bound is a score between 0 and 1")
        if self.member is not None and self.member < 0:
            raise ValueError("the sheet route's member is an ensemble member's index")
        if (self.read_from is None) != (self.read_characters is None):
            raise ValueError("the sheet reading needs both its band (read_from) and its read_characters")
        if self.read_from is not None and not (0.0 < self.read_from < self.card_from):
            raise ValueError("the sheet reading's band starts between 0 and the route's card_from")
        if self.read_characters is not None and self.read_characters < 1:
            raise ValueError("the sheet reading flags from at least one character read")
        if self.second_read is not None and self.read_from is None:
            raise ValueError("the sheet's second reading reads what the sheet reading leaves: set read_from")
        if self.second_from is not None and (self.second_read is None or self.read_from is None):
            raise ValueError("the second engine's own band (second_from) needs the sheet's second reading")
        start, end = self.second_from, self.read_from
        if start is not None and end is not None and not 0.0 < start < end:
            raise ValueError("the second engine's own band starts between 0 and the reading's read_from")

    def cards(self, sheet_scores: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Which pictures the sheet route makes cards (a picture without sheets scores 0)."""
        return np.asarray(sheet_scores, dtype=np.float64) >= self.card_from

    def reads(self, sheet_scores: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Which pictures have their best sheet read (none without the sheet reading)."""
        scores = np.asarray(sheet_scores, dtype=np.float64)
        if self.read_from is None:
            return np.zeros(scores.shape, dtype=bool)
        return (scores >= self.read_from) & (scores < self.card_from)

    def read_cards(
        self, sheet_scores: npt.ArrayLike, read_characters: npt.ArrayLike
    ) -> npt.NDArray[np.bool_]:
        """Which pictures the sheet reading makes cards: their best sheet read (`reads`), with at least
        `read_characters` characters read in it (`read_characters` per picture; any value where not read)."""
        reads = self.reads(sheet_scores)
        if self.read_characters is None:
            return reads
        characters = np.asarray(read_characters, dtype=np.float64).reshape(reads.shape)
        return reads & (characters >= self.read_characters)

    def second_reads(self, sheet_scores: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Which pictures have their best sheet read by the second engine where the first falls short (the
        reading band), or by it alone (from `second_from` up to the band); none without a second reading."""
        scores = np.asarray(sheet_scores, dtype=np.float64)
        if self.second_read is None or self.read_from is None:
            return np.zeros(scores.shape, dtype=bool)
        return (scores >= self.second_start) & (scores < self.card_from)

    @property
    def second_start(self) -> float:
        """Where the second engine's band begins: `second_from`, or the reading band's `read_from`."""
        start = self.second_from if self.second_from is not None else self.read_from
        if start is None:
            raise ValueError("this sheet route does not read its sheets")
        return start

    def second_alone(self, sheet_score: float) -> bool:
        """Whether a best sheet of this score is read by the second engine alone (under the reading band,
        from `second_from` up)."""
        if self.second_from is None or self.read_from is None:
            return False
        return self.second_from <= sheet_score < self.read_from

    def any_reads(self, sheet_scores: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Which pictures have their best sheet read by either engine."""
        return self.reads(sheet_scores) | self.second_reads(sheet_scores)

    def second_wanted(self, read_characters: int) -> bool:
        """Whether a best sheet in the reading band, in which the verifier read `read_characters`, is read
        again by the second engine (the route has a second reading and the first one fell short)."""
        if self.second_read is None or self.read_characters is None:
            return False
        return read_characters < self.read_characters

    def second_cards(
        self, sheet_scores: npt.ArrayLike, second_characters: npt.ArrayLike
    ) -> npt.NDArray[np.bool_]:
        """Which pictures the sheet's second reading makes cards: their best sheet in its band
        (`second_reads`), with at least `second_read.min_characters` read in it by the second engine
        (`second_characters` per picture; any value where not read; none without a second reading)."""
        reads = self.second_reads(sheet_scores)
        if self.second_read is None:
            return np.zeros(reads.shape, dtype=bool)
        characters = np.asarray(second_characters, dtype=np.float64).reshape(reads.shape)
        return reads & (characters >= self.second_read.min_characters)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready record (the card's policy stores it)."""
        record: dict[str, Any] = {
            "card_from": self.card_from,
            "member": self.member,
            "search": self.search.to_json(),
        }
        if self.read_from is not None:
            record["read_from"] = self.read_from
            record["read_characters"] = self.read_characters
        if self.second_read is not None:  # written only where set: older cards keep their versions
            record["second_read"] = self.second_read.to_json()
        if self.second_from is not None:
            record["second_from"] = self.second_from
        return record

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> SheetRoute:
        """The inverse of `to_json`."""
        member = record.get("member")
        read_from = record.get("read_from")
        read_characters = record.get("read_characters")
        second_read = record.get("second_read")
        second_from = record.get("second_from")
        return cls(
            card_from=float(record["card_from"]),
            member=None if member is None else int(member),
            search=SheetSearch.from_json(record.get("search", {})),
            read_from=None if read_from is None else float(read_from),
            read_characters=None if read_characters is None else int(read_characters),
            second_read=None if second_read is None else SecondRead.from_json(second_read),
            second_from=None if second_from is None else float(second_from),
        )


def best_sheet_scores(scorer: Any, sheets: Any, member: int | None = None) -> npt.NDArray[np.float32]:
    """`(N,)` each picture's best sheet score (`best_sheets`'s scores)."""
    return best_sheets(scorer, sheets, member)[0]


def best_sheets(
    scorer: Any, sheets: Any, member: int | None = None
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """`(N,)` each picture's best sheet score and the slot that holds it: the largest `d_x` over its sheets
    (`(N, slots, 3, S, S)` uint8, a torch tensor of `sheet_pixels`'s slots, channels first), by the ensemble
    `member` (`Scorer.member_d_x`) or the whole ensemble; score 0 and slot -1 for a picture without sheets.
    Only the slots that hold a sheet are scored."""
    import torch

    from model.preprocess import normalise
    from model.scoring import ScoreMode

    if sheets.ndim != 5 or sheets.shape[2] != 3:
        raise ValueError(f"expected (N, slots, 3, S, S) sheets, got {tuple(sheets.shape)}")
    count, slots = sheets.shape[:2]
    best = np.zeros(count, dtype=np.float32)
    best_slot = np.full(count, -1, dtype=np.int64)
    flat = sheets.reshape(count * slots, *sheets.shape[2:])
    filled = np.flatnonzero(~is_empty_slot(flat))
    if len(filled) == 0:
        return best, best_slot
    images = normalise(flat[torch.from_numpy(filled).to(flat.device)])
    if member is None:
        scores = np.asarray(scorer.score(images, ScoreMode.D_X).scores, dtype=np.float32)
    else:
        scores = np.asarray(scorer.member_d_x(images, member), dtype=np.float32)
    # Visit the scored slots best first: each picture keeps the first (its best; the lowest slot on a tie).
    for index in np.lexsort((filled, -scores)):
        picture, slot = divmod(int(filled[index]), slots)
        if best_slot[picture] < 0:
            best[picture], best_slot[picture] = scores[index], slot
    return best, best_slot
