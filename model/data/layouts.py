"""Card layouts, split into TRAIN, HELD-OUT and CHECK families with no layout in common.

A layout places the card's text (title, body lines, list, table, prices, sale words) on a prepared
background. TRAIN: centred notice, left-aligned list, grid-lined size chart, sale banner, ruled
price list, boxed vertical Japanese under a title band, bare vertical columns with a title column,
photo banner above the notice, framed photo beside (or below) the notice. HELD-OUT:
header band, zebra-striped size chart, vertical Japanese columns, photo beside text, dotted-leader
price list, sticky note. CHECK (a second set of unseen designs, never trained on and not the
evaluation set): business-day calendar, photo with a caption strip, notched coupon, vertical
notice on a hanging scroll. ONE-LINE (only where a folder asks for it by name, so the random draws of
the families above stay as they were): one short line of large text on a plain ground.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from model.data import drawing
from model.data.drawing import RGB, PhotoProvider
from model.data.fonts import Family


@dataclass
class CardContent:
    """The words of one card, already filled in."""

    lang: str
    topic: str
    title: str
    body: list[str]
    items: list[str]
    table_header: list[str]
    table_rows: list[list[str]]
    prices: list[tuple[str, str]]
    sale_word: str
    signature: str
    chart_title: str
    price_title: str


@dataclass
class Canvas:
    """Everything a layout draws with."""

    image: Image.Image
    rng: np.random.Generator
    title_font: Path
    body_font: Path
    ink: RGB
    accent: RGB
    surface: RGB
    photos: PhotoProvider | None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the render canvas."""
        return self.image.size

    def draw(self) -> ImageDraw.ImageDraw:
        """A fresh drawing context on the canvas."""
        return ImageDraw.Draw(self.image)


Box = tuple[float, float, float, float]


def draw_block(
    cv: Canvas,
    lines: Sequence[str],
    box: Box,
    font_path: Path,
    *,
    align: str = "center",
    max_size: int = 80,
    color: RGB | None = None,
    spacing: float = 0.35,
) -> float:
    """Draw `lines` wrapped into `box` at the largest size that fits; returns the bottom y used."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    if not lines or bw <= 8 or bh <= 8:
        return y0
    size = max_size
    while True:
        f = drawing.font(font_path, size)
        wrapped = [seg for line in lines for seg in drawing.wrap(line, f, bw)]
        line_h = size * (1 + spacing)
        widest = max(drawing.text_width(f, seg) for seg in wrapped)
        if (len(wrapped) * line_h <= bh and widest <= bw) or size <= 8:
            break
        size = int(size * 0.9)
    draw = cv.draw()
    ink = color if color is not None else cv.ink
    y = y0
    for seg in wrapped:
        w = drawing.text_width(f, seg)
        x = x0 + (bw - w) / 2 if align == "center" else (x1 - w if align == "right" else x0)
        draw.text((x, y), seg, font=f, fill=ink)
        y += line_h
    return y


def _title_color(cv: Canvas) -> RGB:
    # Accent titles only where they stay readable against the surface.
    if abs(drawing.luminance(cv.accent) - drawing.luminance(cv.surface)) > 0.3 and cv.rng.random() < 0.5:
        return cv.accent
    return cv.ink


def _margins(cv: Canvas) -> tuple[float, float, float, float]:
    w, h = cv.size
    m = min(w, h) * cv.rng.uniform(0.08, 0.14)
    return m, m, w - m, h - m


def _maybe_photo_insert(cv: Canvas, box: Box) -> bool:
    if cv.photos is None or cv.rng.random() > 0.2:
        return False
    x0, y0, x1, y1 = (int(v) for v in box)
    if x1 - x0 < 40 or y1 - y0 < 40:
        return False
    insert = cv.photos(cv.rng, (x1 - x0, y1 - y0))
    cv.image.paste(insert.convert("RGB"), (x0, y0))
    return True


def logo_badge(cv: Canvas, center: tuple[float, float], r: float, name: str) -> None:
    """A round shop logo: a ring or disc with the shop name's first letters."""
    draw = cv.draw()
    cx, cy = center
    letters = "".join(ch for ch in name if not ch.isspace() and ch not in "-・")[:2] or "S"
    filled = cv.rng.random() < 0.5
    if filled:
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=cv.accent)
        ink = (255, 255, 255) if drawing.luminance(cv.accent) < 0.6 else (20, 20, 20)
    else:
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=cv.accent, width=max(2, int(r / 8)))
        ink = cv.accent
    f = drawing.fit_font(cv.title_font, letters, r * 1.3, r * 1.1, int(r))
    draw.text((cx, cy), letters, font=f, fill=ink, anchor="mm")


# ----------------------------------------------------------------------------- TRAIN layouts
def centered(cv: Canvas, c: CardContent) -> None:
    """Title across the top third, body lines centred below, signature at the bottom."""
    x0, y0, x1, y1 = _margins(cv)
    h = y1 - y0
    r = h * 0.05
    inset = 0.0
    if cv.rng.random() < 0.45:  # a pictogram left of the title, with room kept free for it
        drawing.icon(cv.draw(), (x0 + r, y0 + h * 0.14), r, cv.accent, int(cv.rng.integers(0, 7)))
        inset = 2.6 * r
    title_bottom = draw_block(
        cv,
        [c.title],
        (x0 + inset, y0, x1 - inset, y0 + h * 0.28),
        cv.title_font,
        max_size=120,
        color=_title_color(cv),
    )
    draw = cv.draw()
    if cv.rng.random() < 0.6:
        draw.line(
            [(x0 + (x1 - x0) * 0.2, title_bottom + 4), (x1 - (x1 - x0) * 0.2, title_bottom + 4)],
            fill=cv.accent,
            width=int(cv.rng.integers(2, 6)),
        )
    body_top = title_bottom + h * 0.06
    draw_block(cv, c.body, (x0, body_top, x1, y1 - h * 0.14), cv.body_font, max_size=48)
    right = cv.rng.random() < 0.5
    draw_block(
        cv,
        [c.signature],
        (x0, y1 - h * 0.1, x1, y1),
        cv.body_font,
        max_size=30,
        align="right" if right else "center",
    )
    if right and cv.rng.random() < 0.5:  # the shop's logo badge in the free bottom-left corner
        logo_badge(cv, (x0 + h * 0.07, y1 - h * 0.07), h * 0.07, c.signature)


def left_list(cv: Canvas, c: CardContent) -> None:
    """Left-aligned title with an accent bar, then a bulleted list of rules."""
    x0, y0, x1, y1 = _margins(cv)
    h = y1 - y0
    draw = cv.draw()
    bar_w = int(cv.rng.integers(6, 16))
    draw.rectangle([x0, y0, x0 + bar_w, y0 + h * 0.16], fill=cv.accent)
    draw_block(
        cv,
        [c.title],
        (x0 + bar_w * 2.5, y0, x1, y0 + h * 0.16),
        cv.title_font,
        align="left",
        max_size=100,
        color=_title_color(cv),
    )
    n = int(cv.rng.integers(3, 7))
    list_right = x1
    side = (x1 - x0) * 0.3
    if _maybe_photo_insert(cv, (x1 - side, y0 + h * 0.24, x1, y0 + h * 0.24 + side)):
        list_right = x1 - side - (x1 - x0) * 0.04  # the list runs beside the photo of the item
    draw_block(
        cv,
        c.items[:n],
        (x0, y0 + h * 0.24, list_right, y1),
        cv.body_font,
        align="left",
        max_size=44,
        spacing=0.6,
    )


def _table(cv: Canvas, header: list[str], rows: list[list[str]], box: Box, *, striped: bool) -> None:
    x0, y0, x1, y1 = box
    n_rows = len(rows) + 1
    n_cols = len(header)
    cw, rh = (x1 - x0) / n_cols, (y1 - y0) / n_rows
    draw = cv.draw()
    f = drawing.fit_font(cv.body_font, max(header, key=len) + "m", cw * 0.85, rh * 0.6, int(rh * 0.6))
    header_fill = cv.accent if striped or cv.rng.random() < 0.5 else None
    if header_fill is not None:
        draw.rectangle([x0, y0, x1, y0 + rh], fill=header_fill)
    header_ink = (255, 255, 255) if header_fill and drawing.luminance(header_fill) < 0.6 else cv.ink
    for r, row in enumerate([header, *rows]):
        top = y0 + r * rh
        if striped and r > 0 and r % 2 == 0:
            shade = tuple(
                int(np.clip(v + (-18 if drawing.luminance(cv.surface) > 0.5 else 18), 0, 255))
                for v in cv.surface
            )
            draw.rectangle([x0, top, x1, top + rh], fill=shade)
        for col, cell in enumerate(row):
            cx = x0 + col * cw + cw / 2
            ink = header_ink if r == 0 else cv.ink
            draw.text((cx, top + rh / 2), cell, font=f, fill=ink, anchor="mm")
    if not striped:  # full grid lines
        for r in range(n_rows + 1):
            draw.line([(x0, y0 + r * rh), (x1, y0 + r * rh)], fill=cv.ink, width=2)
        for col in range(n_cols + 1):
            draw.line([(x0 + col * cw, y0), (x0 + col * cw, y1)], fill=cv.ink, width=2)
    else:
        draw.line([(x0, y1), (x1, y1)], fill=cv.accent, width=3)


def _size_rows(cv: Canvas, c: CardContent) -> list[list[str]]:
    return [
        [
            label,
            *(
                f"{cv.rng.uniform(30, 110):.0f}" if cv.rng.random() < 0.7 else f"{cv.rng.uniform(20, 80):.1f}"
                for _ in c.table_header[1:]
            ),
        ]
        for label in c.table_rows[0]
    ]


def grid_table(cv: Canvas, c: CardContent) -> None:
    """A size chart: title, a table with full grid lines, a unit note."""
    x0, y0, x1, y1 = _margins(cv)
    h = y1 - y0
    draw_block(
        cv, [c.chart_title], (x0, y0, x1, y0 + h * 0.15), cv.title_font, max_size=90, color=_title_color(cv)
    )
    _table(cv, c.table_header, _size_rows(cv, c), (x0, y0 + h * 0.22, x1, y1 - h * 0.14), striped=False)
    draw_block(cv, c.body[:1], (x0, y1 - h * 0.1, x1, y1), cv.body_font, max_size=28, align="left")


def banner(cv: Canvas, c: CardContent) -> None:
    """Sale banner: a big word on a coloured band, smaller lines around it."""
    w, h = cv.size
    draw = cv.draw()
    band_y = h * cv.rng.uniform(0.3, 0.45)
    band_h = h * cv.rng.uniform(0.22, 0.32)
    tilt = h * cv.rng.uniform(-0.08, 0.08)
    draw.polygon(
        [(0, band_y + tilt), (w, band_y - tilt), (w, band_y + band_h - tilt), (0, band_y + band_h + tilt)],
        fill=cv.accent,
    )
    word_ink = (255, 255, 255) if drawing.luminance(cv.accent) < 0.6 else (20, 20, 20)
    draw_block(
        cv,
        [c.sale_word],
        (w * 0.06, band_y + band_h * 0.12, w * 0.94, band_y + band_h * 0.9),
        cv.title_font,
        max_size=200,
        color=word_ink,
    )
    draw_block(cv, [c.title], (w * 0.08, h * 0.06, w * 0.92, band_y - h * 0.06), cv.title_font, max_size=70)
    draw_block(
        cv, c.body[:2], (w * 0.08, band_y + band_h + h * 0.08, w * 0.92, h * 0.94), cv.body_font, max_size=40
    )
    # Sparkles in the corners only, where they cannot cover words.
    corners = [(0.06, 0.06), (0.94, 0.06), (0.06, 0.94), (0.94, 0.94)]
    for k in cv.rng.permutation(4)[: int(cv.rng.integers(0, 3))]:
        cx, cy = corners[int(k)]
        drawing.icon(draw, (cx * w, cy * h), min(w, h) * 0.035, cv.accent, 3)


def _widest_row(cv: Canvas, rows: list[tuple[str, str]]) -> str:
    # Size the font on item + gap + price so the two never collide.
    probe = drawing.font(cv.body_font, 50)
    return max(
        (f"{item}\u3000\u3000{price}" for item, price in rows), key=lambda t: drawing.text_width(probe, t)
    )


def ruled_prices(cv: Canvas, c: CardContent) -> None:
    """Price list: item names left, prices right, thin rules between rows."""
    x0, y0, x1, y1 = _margins(cv)
    h = y1 - y0
    draw_block(
        cv, [c.price_title], (x0, y0, x1, y0 + h * 0.16), cv.title_font, max_size=90, color=_title_color(cv)
    )
    rows = c.prices
    top = y0 + h * 0.24
    rh = (y1 - top) / max(len(rows), 1)
    f = drawing.fit_font(cv.body_font, _widest_row(cv, rows), (x1 - x0) * 0.95, rh * 0.55, int(rh * 0.55))
    draw = cv.draw()
    for i, (item, price) in enumerate(rows):
        y = top + i * rh + rh / 2
        draw.text((x0, y), item, font=f, fill=cv.ink, anchor="lm")
        draw.text((x1, y), price, font=f, fill=cv.ink, anchor="rm")
        draw.line([(x0, top + (i + 1) * rh), (x1, top + (i + 1) * rh)], fill=cv.accent, width=1)


# Glyphs that turn a quarter turn when Japanese is set top to bottom.
_TURNED_IN_TATEGAKI = frozenset("ー〜～-−…‥()（）「」『』")


def _tategaki_columns(cv: Canvas, texts: Sequence[str], box: Box, font_path: Path, ink: RGB) -> None:
    """Set each text top to bottom in columns that run from the box's right edge leftwards.

    The glyph size is the largest at which every text, broken into columns of the box's height,
    fits the box's width; a text that does not fit is cut at the left edge rather than shrunk
    into illegibility.
    """
    x0, y0, x1, y1 = box
    pitch, gap = 1.1, 1.7  # glyph advance down a column; column advance across, in glyph sizes
    size = int(min((x1 - x0) / 2, (y1 - y0) / 4))
    while size > 8:
        per_col = max(1, int((y1 - y0) // (size * pitch)))
        n_cols = sum(-(-len(t) // per_col) for t in texts)
        if n_cols * size * gap <= x1 - x0:
            break
        size -= max(1, size // 10)
    per_col = max(1, int((y1 - y0) // (size * pitch)))
    f = drawing.font(font_path, size)
    draw = cv.draw()
    right = x1
    for text in texts:
        for start in range(0, len(text), per_col):
            if right - size < x0 - 1:
                return
            cx = right - size / 2
            for j, ch in enumerate(text[start : start + per_col]):
                cy = y0 + (j + 0.5) * size * pitch
                if ch in _TURNED_IN_TATEGAKI:
                    tile = Image.new("L", (2 * size, 2 * size), 0)
                    ImageDraw.Draw(tile).text((size, size), ch, font=f, fill=255, anchor="mm")
                    tile = tile.transpose(Image.Transpose.ROTATE_270)
                    cv.image.paste(Image.new("RGB", tile.size, ink), (int(cx - size), int(cy - size)), tile)
                else:
                    draw.text((cx, cy), ch, font=f, fill=ink, anchor="mm")
            right -= size * gap


def boxed_vertical(cv: Canvas, c: CardContent) -> None:
    """A bordered notice box: the title across a band at the top, the body in vertical columns below.

    Japanese shops post notices set top to bottom; this is the TRAIN family's way of drawing one
    (a horizontal title band over tategaki body text inside a ruled box).
    """
    x0, y0, x1, y1 = _margins(cv)
    h = y1 - y0
    draw = cv.draw()
    line_w = int(cv.rng.integers(2, 7))
    if cv.rng.random() < 0.5:  # a double rule, as on printed notices
        draw.rectangle([x0, y0, x1, y1], outline=cv.accent, width=line_w)
        inner = line_w + 6
        draw.rectangle([x0 + inner, y0 + inner, x1 - inner, y1 - inner], outline=cv.accent, width=2)
    else:
        draw.rectangle([x0, y0, x1, y1], outline=cv.ink, width=line_w)
    band_h = h * cv.rng.uniform(0.14, 0.22)
    pad = h * 0.04
    filled = cv.rng.random() < 0.6
    if filled:
        draw.rectangle([x0 + pad, y0 + pad, x1 - pad, y0 + pad + band_h], fill=cv.accent)
        title_ink = (255, 255, 255) if drawing.luminance(cv.accent) < 0.6 else (15, 15, 15)
    else:
        draw.line([(x0 + pad, y0 + pad + band_h), (x1 - pad, y0 + pad + band_h)], fill=cv.accent, width=3)
        title_ink = _title_color(cv)
    draw_block(
        cv,
        [c.title],
        (x0 + pad * 1.5, y0 + pad * 1.2, x1 - pad * 1.5, y0 + pad + band_h * 0.9),
        cv.title_font,
        max_size=90,
        color=title_ink,
    )
    body_box = (x0 + pad * 1.5, y0 + pad * 2 + band_h, x1 - pad * 1.5, y1 - pad * 1.5)
    _tategaki_columns(cv, [*c.body, c.signature], body_box, cv.body_font, cv.ink)


def photo_banner(cv: Canvas, c: CardContent) -> None:
    """A framed photograph of the item across the top, the notice centred underneath.

    The TRAIN family's card with a product photo: an inset picture (margins kept, thin frame)
    above a centred title and body, as shops post for a sold-out or restocked item.
    """
    x0, y0, x1, y1 = _margins(cv)
    h = y1 - y0
    photo_h = int(h * cv.rng.uniform(0.32, 0.5))
    inset = (x1 - x0) * cv.rng.uniform(0.0, 0.15)
    px0, px1 = int(x0 + inset), int(x1 - inset)
    if cv.photos is not None:
        cv.image.paste(cv.photos(cv.rng, (px1 - px0, photo_h)).convert("RGB"), (px0, int(y0)))
    else:  # no photographs available: a patterned placeholder of the same size
        cv.image.paste(
            drawing.background((px1 - px0, photo_h), cv.rng, None)[0].convert("RGB"), (px0, int(y0))
        )
    draw = cv.draw()
    draw.rectangle([px0, y0, px1, y0 + photo_h], outline=cv.ink, width=int(cv.rng.integers(1, 4)))
    top = y0 + photo_h + h * 0.05
    bottom = draw_block(
        cv, [c.title], (x0, top, x1, top + h * 0.17), cv.title_font, max_size=100, color=_title_color(cv)
    )
    draw_block(cv, c.body, (x0, bottom + h * 0.03, x1, y1), cv.body_font, max_size=40)


def column_notice(cv: Canvas, c: CardContent) -> None:
    """Vertical Japanese with no box or band: a title column, a thin rule, the body in columns.

    The TRAIN family's second tategaki design. `boxed_vertical` always frames its columns under a
    horizontal band, and a model trained on it alone learned the frame rather than the columns, so
    this one draws bare columns over a wide range of glyph sizes (a short notice gets a few large
    columns, a long one many small ones), on any background, with the shop's seal at the foot.
    """
    x0, y0, x1, y1 = _margins(cv)
    w, h = x1 - x0, y1 - y0
    title_w = w * cv.rng.uniform(0.14, 0.26)
    # The title column stands on the right (where reading starts), in the title font, often accented.
    _tategaki_columns(cv, [c.title], (x1 - title_w, y0, x1, y1), cv.title_font, _title_color(cv))
    rule_x = x1 - title_w - w * 0.03
    if cv.rng.random() < 0.6:
        cv.draw().line([(rule_x, y0 + h * 0.05), (rule_x, y1 - h * 0.05)], fill=cv.accent, width=2)
    lines = list(c.body[: int(cv.rng.integers(1, len(c.body) + 1))]) if c.body else []
    body_box = (x0, y0 + h * cv.rng.uniform(0.0, 0.12), rule_x - w * 0.04, y1)
    _tategaki_columns(cv, [*lines, c.signature], body_box, cv.body_font, cv.ink)
    if cv.rng.random() < 0.5:  # a square red seal (hanko) bottom left, as on printed notices
        r = min(w, h) * cv.rng.uniform(0.04, 0.07)
        draw = cv.draw()
        seal = (200, 30, 30)
        draw.rectangle([x0, y1 - 2 * r, x0 + 2 * r, y1], outline=seal, width=max(2, int(r / 6)))
        f = drawing.fit_font(cv.title_font, c.signature[:1] or "印", r * 1.4, r * 1.4, int(r * 1.4))
        draw.text((x0 + r, y1 - r), c.signature[:1] or "印", font=f, fill=seal, anchor="mm")


def photo_side(cv: Canvas, c: CardContent) -> None:
    """A framed photograph on the left or right half, the notice beside it (below it on tall cards).

    The TRAIN family's second card with a photograph: `photo_banner` only ever puts the picture
    across the top, so a side-by-side card would be a new shape to a model trained on it alone.
    """
    x0, y0, x1, y1 = _margins(cv)
    w, h = x1 - x0, y1 - y0
    frac = cv.rng.uniform(0.35, 0.55)
    if w >= h * 0.9:
        on_left = cv.rng.random() < 0.5
        pw = int(w * frac)
        pbox = (
            (int(x0), int(y0), int(x0) + pw, int(y1))
            if on_left
            else (int(x1) - pw, int(y0), int(x1), int(y1))
        )
        gap = w * 0.05
        tbox = (x0 + pw + gap, y0, x1, y1) if on_left else (x0, y0, x1 - pw - gap, y1)
    else:  # tall card: the photo at the foot, the notice above it
        ph = int(h * frac)
        pbox = (int(x0), int(y1) - ph, int(x1), int(y1))
        tbox = (x0, y0, x1, y1 - ph - h * 0.05)
    size = (pbox[2] - pbox[0], pbox[3] - pbox[1])
    picture = cv.photos(cv.rng, size) if cv.photos is not None else drawing.background(size, cv.rng, None)[0]
    cv.image.paste(picture.convert("RGB"), pbox[:2])
    if cv.rng.random() < 0.7:
        cv.draw().rectangle(pbox, outline=cv.ink, width=int(cv.rng.integers(1, 5)))
    tx0, ty0, tx1, ty1 = tbox
    align = "center" if cv.rng.random() < 0.6 else "left"
    bottom = draw_block(
        cv,
        [c.title],
        (tx0, ty0, tx1, ty0 + (ty1 - ty0) * 0.32),
        cv.title_font,
        max_size=96,
        color=_title_color(cv),
        align=align,
    )
    draw_block(
        cv, c.body, (tx0, bottom + (ty1 - ty0) * 0.04, tx1, ty1), cv.body_font, max_size=42, align=align
    )


# -------------------------------------------------------------------------- HELD-OUT layouts
def header_band(cv: Canvas, c: CardContent) -> None:
    """A solid band across the top carrying the title in reverse colour; body below."""
    w, h = cv.size
    band_h = h * cv.rng.uniform(0.18, 0.28)
    draw = cv.draw()
    draw.rectangle([0, 0, w, band_h], fill=cv.accent)
    ink = (255, 255, 255) if drawing.luminance(cv.accent) < 0.6 else (15, 15, 15)
    draw_block(
        cv,
        [c.title],
        (w * 0.07, band_h * 0.15, w * 0.93, band_h * 0.88),
        cv.title_font,
        max_size=110,
        color=ink,
    )
    align = "left" if cv.rng.random() < 0.5 else "center"
    draw_block(
        cv,
        c.body,
        (w * 0.08, band_h + h * 0.07, w * 0.92, h * 0.82),
        cv.body_font,
        align=align,
        max_size=44,
        spacing=0.55,
    )
    draw_block(
        cv, [c.signature], (w * 0.08, h * 0.86, w * 0.92, h * 0.95), cv.body_font, max_size=28, align="right"
    )
    if cv.rng.random() < 0.4:  # the shop's logo badge bottom left, opposite the signature
        logo_badge(cv, (w * 0.08 + h * 0.05, h * 0.905), h * 0.05, c.signature)


def striped_table(cv: Canvas, c: CardContent) -> None:
    """A size chart with zebra rows and no vertical lines, title in a pill."""
    x0, y0, x1, y1 = _margins(cv)
    h = y1 - y0
    draw = cv.draw()
    draw.rounded_rectangle([x0, y0, x1, y0 + h * 0.15], radius=int(h * 0.07), outline=cv.accent, width=3)
    draw_block(
        cv,
        [c.chart_title],
        (x0 + h * 0.05, y0 + h * 0.02, x1 - h * 0.05, y0 + h * 0.13),
        cv.title_font,
        max_size=80,
    )
    _table(cv, c.table_header, _size_rows(cv, c), (x0, y0 + h * 0.22, x1, y1 - h * 0.12), striped=True)
    draw_block(cv, c.body[-1:], (x0, y1 - h * 0.09, x1, y1), cv.body_font, max_size=26, align="center")


def vertical_ja(cv: Canvas, c: CardContent) -> None:
    """Japanese written top-to-bottom in columns running right to left (tategaki)."""
    x0, y0, x1, y1 = _margins(cv)
    col_h = y1 - y0
    texts = [c.title, *c.body]
    # Largest glyph size at which every line, broken into columns of the card's height, fits.
    size = int(min(col_h / 5, (x1 - x0) / 3))
    while size > 8:
        per_col = max(1, int(col_h / (size * 1.05)))
        n_cols = sum(-(-len(t) // per_col) for t in texts)
        if n_cols * size * 1.55 + size * 0.4 <= x1 - x0:
            break
        size = int(size * 0.92)
    per_col = max(1, int(col_h / (size * 1.05)))
    draw = cv.draw()
    x = x1 - size
    title_ink = _title_color(cv)
    for i, text in enumerate(texts):
        f = drawing.font(cv.title_font if i == 0 else cv.body_font, size)
        ink = title_ink if i == 0 else cv.ink
        chunks = [text[k : k + per_col] for k in range(0, len(text), per_col)]
        for chunk in chunks:
            for j, ch in enumerate(chunk):
                cy = y0 + j * size * 1.05 + size / 2
                if ch in "ー〜-…()（）":  # these glyphs turn 90 degrees in vertical writing
                    glyph = Image.new("L", (size * 2, size * 2), 0)
                    ImageDraw.Draw(glyph).text((size, size), ch, font=f, fill=255, anchor="mm")
                    glyph = glyph.rotate(-90)
                    cv.image.paste(
                        Image.new("RGB", glyph.size, ink), (int(x + size / 2 - size), int(cy - size)), glyph
                    )
                else:
                    draw.text((x + size / 2, cy), ch, font=f, fill=ink, anchor="mm")
            x -= size * 1.55
        if i == 0:
            x -= size * 0.4  # a little more air after the title column
        if x < x0 - size:
            break


def split_photo(cv: Canvas, c: CardContent) -> None:
    """A photograph filling one side of the card, the notice on the other."""
    w, h = cv.size
    horizontal = w >= h
    frac = cv.rng.uniform(0.35, 0.5)
    if horizontal:
        pbox = (0, 0, int(w * frac), h)
        tbox = (w * frac + w * 0.05, h * 0.1, w * 0.95, h * 0.9)
    else:
        pbox = (0, 0, w, int(h * frac))
        tbox = (w * 0.07, h * frac + h * 0.05, w * 0.93, h * 0.95)
    if cv.photos is not None:
        cv.image.paste(cv.photos(cv.rng, (pbox[2] - pbox[0], pbox[3] - pbox[1])).convert("RGB"), pbox[:2])
    else:
        cv.draw().rectangle(pbox, fill=cv.accent)
    x0, y0, x1, y1 = tbox
    th = y1 - y0
    bottom = draw_block(
        cv,
        [c.title],
        (x0, y0, x1, y0 + th * 0.3),
        cv.title_font,
        max_size=90,
        color=_title_color(cv),
        align="left",
    )
    draw_block(cv, c.body, (x0, bottom + th * 0.05, x1, y1), cv.body_font, max_size=40, align="left")


def leader_prices(cv: Canvas, c: CardContent) -> None:
    """Price list with dotted leaders joining item and price, title boxed."""
    x0, y0, x1, y1 = _margins(cv)
    h = y1 - y0
    draw = cv.draw()
    draw.rectangle([x0, y0, x1, y0 + h * 0.16], outline=cv.ink, width=2)
    draw_block(cv, [c.price_title], (x0 + 10, y0 + 6, x1 - 10, y0 + h * 0.16 - 6), cv.title_font, max_size=80)
    top = y0 + h * 0.24
    rows = c.prices
    rh = (y1 - top) / max(len(rows), 1)
    f = drawing.fit_font(cv.body_font, _widest_row(cv, rows), (x1 - x0) * 0.8, rh * 0.5, int(rh * 0.5))
    for i, (item, price) in enumerate(rows):
        y = top + i * rh + rh / 2
        draw.text((x0, y), item, font=f, fill=cv.ink, anchor="lm")
        draw.text((x1, y), price, font=f, fill=cv.ink, anchor="rm")
        a = x0 + drawing.text_width(f, item) + 8
        b = x1 - drawing.text_width(f, price) - 8
        for dx in np.arange(a, b, max(6.0, f.size * 0.4)):
            draw.ellipse([dx - 1.5, y - 1.5, dx + 1.5, y + 1.5], fill=cv.ink)


def sticky_note(cv: Canvas, c: CardContent) -> None:
    """A slightly rotated note card with a pin, carrying the notice, pasted on the background."""
    w, h = cv.size
    nw, nh = int(w * cv.rng.uniform(0.65, 0.85)), int(h * cv.rng.uniform(0.6, 0.82))
    note_color = (
        drawing.light_color(cv.rng)
        if cv.rng.random() < 0.6
        else drawing.hsv(cv.rng.uniform(0.1, 0.18), 0.35, 1.0)
    )
    note = Image.new("RGB", (nw, nh), note_color)
    sub = Canvas(
        note,
        cv.rng,
        cv.title_font,
        cv.body_font,
        drawing.text_color_for(note_color, cv.rng),
        cv.accent,
        note_color,
        None,
    )
    bottom = draw_block(
        sub,
        [c.title],
        (nw * 0.08, nh * 0.1, nw * 0.92, nh * 0.35),
        sub.title_font,
        max_size=80,
        color=_title_color(sub),
    )
    draw_block(sub, c.body, (nw * 0.08, bottom + nh * 0.05, nw * 0.92, nh * 0.92), sub.body_font, max_size=40)
    angle = cv.rng.uniform(-8, 8)
    mask = Image.new("L", note.size, 255)
    note_r = note.rotate(angle, expand=True, resample=Image.Resampling.BICUBIC)
    mask_r = mask.rotate(angle, expand=True, resample=Image.Resampling.BICUBIC)
    ox, oy = (w - note_r.width) // 2, (h - note_r.height) // 2
    shadow = Image.new("RGB", note_r.size, (40, 40, 40))
    cv.image.paste(shadow, (ox + 8, oy + 10), mask_r.point(lambda v: v // 3))
    cv.image.paste(note_r, (ox, oy), mask_r)
    pin = cv.draw()
    r = min(w, h) * 0.025
    pin.ellipse([w / 2 - r, oy + r, w / 2 + r, oy + 3 * r], fill=cv.accent)


# ----------------------------------------------------------------------------- CHECK layouts
# Designs in neither TRAIN nor HELD-OUT, so a recipe can be judged on card designs it never trained
# on without looking at the evaluation set (read next to eval/: one hard design dominates each set).
_WEEKDAYS = {"ja": "日月火水木金土", "en": "SMTWTFS"}


def calendar(cv: Canvas, c: CardContent) -> None:
    """A month of business days: the title, a 7-column grid of dates with closed days marked, a note."""
    x0, y0, x1, y1 = _margins(cv)
    w, h = x1 - x0, y1 - y0
    rng = cv.rng
    top = draw_block(
        cv, [c.title], (x0, y0, x1, y0 + h * 0.18), cv.title_font, max_size=80, color=_title_color(cv)
    )
    note_top = y1 - h * 0.12
    first, days = int(rng.integers(0, 7)), int(rng.integers(28, 32))
    rows = -(-(first + days) // 7)
    grid_top = top + h * 0.03
    cw, ch = w / 7, (note_top - grid_top) / (rows + 1)
    f = drawing.font(cv.body_font, int(min(cw, ch) * 0.5))
    draw = cv.draw()
    closed = {d for d in range(1, days + 1) if (first + d - 1) % 7 == 0}  # Sundays
    closed |= {int(d) for d in rng.integers(1, days + 1, int(rng.integers(2, 6)))}
    filled_marks = rng.random() < 0.5
    ruled = rng.random() < 0.5
    for col, head in enumerate(_WEEKDAYS[c.lang]):
        ink = (200, 40, 40) if col == 0 else ((40, 70, 200) if col == 6 else cv.ink)
        draw.text((x0 + (col + 0.5) * cw, grid_top + ch / 2), head, font=f, fill=ink, anchor="mm")
    for day in range(1, days + 1):
        row, col = divmod(first + day - 1, 7)
        cx, cy = x0 + (col + 0.5) * cw, grid_top + (row + 1.5) * ch
        r = min(cw, ch) * 0.42
        if ruled:
            draw.rectangle([cx - cw / 2, cy - ch / 2, cx + cw / 2, cy + ch / 2], outline=cv.ink, width=1)
        ink = cv.ink
        if day in closed and filled_marks:
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=cv.accent)
            ink = (255, 255, 255) if drawing.luminance(cv.accent) < 0.6 else (20, 20, 20)
        elif day in closed:
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=cv.accent, width=max(2, int(r / 6)))
        draw.text((cx, cy), str(day), font=f, fill=ink, anchor="mm")
    draw_block(cv, c.body[:1], (x0, note_top + h * 0.02, x1, y1), cv.body_font, max_size=36)


def caption_strip(cv: Canvas, c: CardContent) -> None:
    """A photograph filling the card, the notice on a translucent strip across its lower or upper part."""
    w, h = cv.size
    rng = cv.rng
    if cv.photos is not None:
        cv.image.paste(cv.photos(rng, (w, h)).convert("RGB"), (0, 0))
    dark = rng.random() < 0.6
    strip_color = (15, 15, 20) if dark else (250, 250, 245)
    ink = (255, 255, 255) if dark else (25, 25, 30)
    strip_h = h * rng.uniform(0.3, 0.45)
    sy0 = h - strip_h if rng.random() < 0.7 else 0.0
    drawing.panel(cv.image, (0, int(sy0), w, int(sy0 + strip_h)), strip_color, int(rng.integers(150, 230)), 0)
    pad = w * 0.06
    bottom = draw_block(
        cv,
        [c.title],
        (pad, sy0 + strip_h * 0.1, w - pad, sy0 + strip_h * 0.45),
        cv.title_font,
        max_size=80,
        color=ink,
        align="left",
    )
    draw_block(
        cv,
        c.body,
        (pad, bottom, w - pad, sy0 + strip_h * 0.92),
        cv.body_font,
        max_size=36,
        color=ink,
        align="left",
    )


def coupon(cv: Canvas, c: CardContent) -> None:
    """A ticket with notched sides and a dashed border; the offer on the left, a stub on the right."""
    x0, y0, x1, y1 = _margins(cv)
    w, h = x1 - x0, y1 - y0
    draw = cv.draw()
    ticket = drawing.light_color(cv.rng) if cv.rng.random() < 0.6 else cv.accent
    draw.rounded_rectangle([x0, y0, x1, y1], radius=int(min(w, h) * 0.05), fill=ticket)
    r = min(w, h) * 0.07
    for nx in (x0, x1):  # the punched notches show the card's own surface
        draw.ellipse([nx - r, (y0 + y1) / 2 - r, nx + r, (y0 + y1) / 2 + r], fill=cv.surface)
    ink = drawing.text_color_for(ticket, cv.rng)
    inset = r * 0.6
    dash = max(6.0, r * 0.5)
    for x in np.arange(x0 + inset, x1 - inset, dash * 2):
        for y in (y0 + inset, y1 - inset):
            draw.line([(x, y), (min(x + dash, x1 - inset), y)], fill=ink, width=2)
    stub_x = x1 - w * cv.rng.uniform(0.22, 0.3)
    for y in np.arange(y0 + inset, y1 - inset, dash * 2):
        draw.line([(stub_x, y), (stub_x, min(y + dash, y1 - inset))], fill=ink, width=2)
    inner = (x0 + r * 1.5, y0 + h * 0.12, stub_x - r * 0.5, y1 - h * 0.12)
    bottom = draw_block(
        cv,
        [c.sale_word],
        (inner[0], inner[1], inner[2], inner[1] + h * 0.35),
        cv.title_font,
        max_size=110,
        color=ink,
    )
    draw_block(
        cv,
        [c.title, *c.body[:1]],
        (inner[0], bottom + h * 0.03, inner[2], inner[3]),
        cv.body_font,
        max_size=40,
        color=ink,
    )
    stub = Image.new("RGB", (int(y1 - y0 - 2 * inset), int(x1 - stub_x - inset)), ticket)
    label = drawing.fit_font(
        cv.title_font, c.signature, stub.width * 0.9, stub.height * 0.6, int(stub.height * 0.6)
    )
    ImageDraw.Draw(stub).text(
        (stub.width / 2, stub.height / 2), c.signature, font=label, fill=ink, anchor="mm"
    )
    cv.image.paste(stub.transpose(Image.Transpose.ROTATE_270), (int(stub_x + inset / 2), int(y0 + inset)))


def hanging_scroll(cv: Canvas, c: CardContent) -> None:
    """A narrow paper scroll hung in the middle of the card, the notice in large vertical columns."""
    w, h = cv.size
    rng = cv.rng
    sw = w * rng.uniform(0.4, 0.6)
    sx0, sx1 = (w - sw) / 2, (w + sw) / 2
    sy0, sy1 = h * 0.06, h * 0.94
    draw = cv.draw()
    paper = drawing.light_color(rng)
    draw.rectangle([sx0, sy0, sx1, sy1], fill=paper)
    rod = drawing.dark_color(rng)
    rod_h = h * 0.025
    for y in (sy0 - rod_h, sy1):
        draw.rounded_rectangle(
            [sx0 - sw * 0.06, y, sx1 + sw * 0.06, y + rod_h], radius=int(rod_h / 2), fill=rod
        )
    ink = drawing.text_color_for(paper, rng)
    box = (sx0 + sw * 0.1, sy0 + h * 0.05, sx1 - sw * 0.1, sy1 - h * 0.05)
    _tategaki_columns(cv, [c.title, *c.body[:2]], box, cv.title_font, ink)


# The longest text a one-line card carries: a headline, not a sentence.
_ONE_LINE_MAX_CHARS = {"ja": 10, "en": 18}


def one_line(cv: Canvas, c: CardContent) -> None:
    """One short line of large text on a plain ground, and nothing else ("SOLD OUT", "臨時休業").

    The hardest design for both stages: the model has learned cards as blocks of text, and an OCR rule
    that counts words reads one or two. The ground is repainted flat, so no frame, panel or photo stays.
    """
    w, h = cv.size
    rng = cv.rng
    limit = _ONE_LINE_MAX_CHARS[c.lang]
    candidates = [t for t in (c.title, c.sale_word) if t and len(t) <= limit]
    text = (
        candidates[int(rng.integers(0, len(candidates)))]
        if candidates
        else min((c.title, c.sale_word), key=len)
    )
    ground = drawing.light_color(rng) if rng.random() < 0.7 else drawing.dark_color(rng)
    ink = drawing.text_color_for(ground, rng)
    cv.draw().rectangle([0, 0, w, h], fill=ground)
    f = drawing.fit_font(cv.title_font, text, w * rng.uniform(0.45, 0.9), h * rng.uniform(0.1, 0.25), 400)
    left, top, right, bottom = f.getbbox(text)
    x = (w - (right - left)) / 2 - left
    y = h * rng.uniform(0.3, 0.7) - (bottom - top) / 2 - top
    cv.draw().text((x, y), text, font=f, fill=ink)


Layout = Callable[[Canvas, CardContent], None]

LAYOUTS: dict[Family, dict[str, Layout]] = {
    Family.TRAIN: {
        "centered": centered,
        "left_list": left_list,
        "grid_table": grid_table,
        "banner": banner,
        "ruled_prices": ruled_prices,
        "boxed_vertical": boxed_vertical,
        "photo_banner": photo_banner,
        "column_notice": column_notice,
        "photo_side": photo_side,
    },
    Family.HELDOUT: {
        "header_band": header_band,
        "striped_table": striped_table,
        "vertical_ja": vertical_ja,
        "split_photo": split_photo,
        "leader_prices": leader_prices,
        "sticky_note": sticky_note,
    },
    Family.CHECK: {
        "calendar": calendar,
        "caption_strip": caption_strip,
        "coupon": coupon,
        "hanging_scroll": hanging_scroll,
    },
}

# Layouts a folder draws only by name (SplitPlan.layout), outside every family's random draw.
NAMED_ONLY: dict[str, Layout] = {"one_line": one_line}
# Layouts that paint over the whole background (and any frame) with one flat colour.
PLAIN_GROUND: frozenset[str] = frozenset({"one_line"})

# Layouts that need Japanese text (vertical writing is meaningless for Latin script).
JAPANESE_ONLY: frozenset[str] = frozenset(
    {"vertical_ja", "boxed_vertical", "column_notice", "hanging_scroll"}
)
