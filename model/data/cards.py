"""Synthetic announcement cards: the target class the one-class model is trained on.

`CardGenerator(family).render(seed)` draws one card: Japanese or English notice text from the
family's phrase bank, in the family's fonts and layouts, on a flat, gradient, paper, pattern or
photo background, with optional frame, pictogram and photo insert, then downscaled, sometimes
blurred. The TRAIN and HELD-OUT families share no font, layout or phrase, so an evaluation on
HELD-OUT cards measures generalisation to unseen card designs. Same seed, same card.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from model.data import drawing, layouts, phrases
from model.data.dataset_errors import UnknownLayout
from model.data.drawing import PhotoProvider
from model.data.fonts import Family, ResolvedFont, Script, resolve_family
from model.data.layouts import Canvas, CardContent

# cards-2: TRAIN adds boxed_vertical and photo_banner; cards-3: TRAIN adds column_notice and photo_side;
# cards-4: TRAIN draws a third of its flat light backgrounds dark; cards-5: half of them;
# cards-6: the CHECK family (TRAIN and HELD-OUT cards are drawn exactly as in cards-5);
# cards-7: the named-only one_line layout (every earlier card is drawn exactly as in cards-6).
GENERATOR_VERSION = "cards-7"
# The held-out cards a cards-3 model missed most were light text on dark backgrounds; TRAIN had them
# on about one card in eight (flat dark), now about one in three. HELD-OUT keeps the old mix and draws.
_TRAIN_DARKER = 0.5

ASPECTS: tuple[tuple[int, int], ...] = ((1, 1), (1, 1), (4, 3), (3, 4), (16, 9))
RENDER_LONG_SIDE = 640


@dataclass(frozen=True)
class CardInfo:
    """What went into a card (recorded in dataset manifests)."""

    family: str
    layout: str
    lang: str
    topic: str
    title_font: str
    body_font: str
    background: str
    frame: str
    width: int
    height: int

    def as_dict(self) -> dict[str, object]:
        """The info as a plain dict."""
        return asdict(self)


def _price(rng: np.random.Generator, lang: str) -> str:
    if lang == "ja":
        return f"¥{int(rng.integers(1, 60)) * 50:,}"
    return f"${rng.integers(1, 40)}.{rng.choice(['00', '50', '99'])}"


def make_content(family: Family, lang: str, rng: np.random.Generator) -> CardContent:
    """Pick and fill the words of one card from the family's phrase bank."""
    bank = phrases.BANKS[family][lang]
    topic = str(rng.choice(list(phrases.TOPICS)))
    fill = lambda t: phrases.fill(t, rng, bank.shops)  # noqa: E731 - short local helper
    bodies = list(bank.bodies[topic])
    rng.shuffle(bodies)
    n_body = int(rng.integers(2, min(4, len(bodies)) + 1))
    items = list(bank.list_items)
    rng.shuffle(items)
    t_idx = int(rng.integers(0, len(bank.table_headers)))
    r_idx = int(rng.integers(0, len(bank.table_row_labels)))
    price_names = list(bank.price_items)
    rng.shuffle(price_names)
    n_prices = int(rng.integers(3, min(6, len(price_names)) + 1))
    return CardContent(
        lang=lang,
        topic=topic,
        title=fill(str(rng.choice(list(bank.titles[topic])))),
        body=[fill(b) for b in bodies[:n_body]],
        items=items,
        table_header=list(bank.table_headers[t_idx]),
        table_rows=[list(bank.table_row_labels[r_idx])],
        prices=[(name, _price(rng, lang)) for name in price_names[:n_prices]],
        sale_word=fill(str(rng.choice(list(bank.sale_words)))),
        chart_title=str(rng.choice(list(bank.titles["size_chart"]))),
        price_title=str(rng.choice(list(bank.titles["price_list"]))),
        signature=str(rng.choice(list(bank.shops))),
    )


def _all_text(c: CardContent) -> str:
    parts = [
        c.title,
        c.chart_title,
        c.price_title,
        *c.body,
        *c.items,
        *c.table_header,
        *c.table_rows[0],
        c.sale_word,
        c.signature,
    ]
    parts += [p for pair in c.prices for p in pair]
    return "".join(parts)


class CardGenerator:
    """Renders announcement cards of one family.

    Args:
        family: TRAIN or HELDOUT; selects fonts, layouts and phrases.
        photos: optional source of real photo crops for photo backgrounds, inserts and the
            photo-beside-text layout; None draws cards without photographs.
        size: long side of the output image in pixels.

    Raises:
        FontsMissing: when the family's fonts are not installed.
    """

    def __init__(self, family: Family, photos: PhotoProvider | None = None, size: int = 256) -> None:
        self.family = family
        self.photos = photos
        self.size = size
        self.fonts: tuple[ResolvedFont, ...] = resolve_family(family)
        self.layouts = layouts.LAYOUTS[family]

    def _pick_font(self, rng: np.random.Generator, text: str, japanese: bool) -> ResolvedFont:
        pool = [f for f in self.fonts if (f.spec.script is Script.JAPANESE) == japanese or not japanese]
        covering = [f for f in pool if f.covers(text)]
        if not covering:  # fall back to fonts covering the most characters rather than failing
            covering = sorted(pool, key=lambda f: -sum(ord(ch) in f.charset for ch in text))[:1]
        return covering[int(rng.integers(0, len(covering)))]

    def render(
        self, seed: int | np.random.Generator, layout: str | None = None
    ) -> tuple[Image.Image, CardInfo]:
        """Draw one card.

        Args:
            seed: an integer seed or a generator; equal seeds give identical cards.
            layout: force one of the family's layouts or a named-only one (`layouts.NAMED_ONLY`),
                drawn in the family's fonts and words (default: one of the family's, at random).

        Returns:
            The RGB card (long side `size`) and a description of what went into it.
        """
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        aw, ah = ASPECTS[int(rng.integers(0, len(ASPECTS)))]
        if aw >= ah:
            w, h = RENDER_LONG_SIDE, round(RENDER_LONG_SIDE * ah / aw)
        else:
            w, h = round(RENDER_LONG_SIDE * aw / ah), RENDER_LONG_SIDE
        layout_name = str(rng.choice(sorted(self.layouts)))
        if layout is not None:
            if layout not in self.layouts and layout not in layouts.NAMED_ONLY:
                raise UnknownLayout(
                    f"layout {layout!r} is not in the {self.family.value} family: {sorted(self.layouts)}"
                    f" (named-only: {sorted(layouts.NAMED_ONLY)})"
                )
            layout_name = layout
        lang = "ja" if layout_name in layouts.JAPANESE_ONLY or rng.random() < 0.65 else "en"
        content = make_content(self.family, lang, rng)
        text = _all_text(content)
        # English cards use Latin fonts mostly but Japanese fonts also carry Latin glyphs.
        japanese_font = lang == "ja" or rng.random() < 0.25
        title_font = self._pick_font(rng, text, japanese_font)
        body_font = title_font if rng.random() < 0.5 else self._pick_font(rng, text, japanese_font)

        image, surface, bg_style = drawing.background(
            (w, h), rng, self.photos, darker=_TRAIN_DARKER if self.family is Family.TRAIN else 0.0
        )
        if bg_style == "photo" or (bg_style in {"gradient", "pattern"} and rng.random() < 0.3):
            # Text on busy backgrounds sits on a translucent panel, as shop cards usually do.
            surface = drawing.light_color(rng) if rng.random() < 0.75 else drawing.dark_color(rng)
            m = min(w, h) * rng.uniform(0.04, 0.08)
            drawing.panel(
                image,
                (int(m), int(m), int(w - m), int(h - m)),
                surface,
                int(rng.integers(200, 245)),
                int(min(w, h) * 0.04),
            )
        ink = drawing.text_color_for(surface, rng)
        accent = drawing.accent_color(rng)
        frame_style = drawing.frame(ImageDraw.Draw(image), (w, h), accent if rng.random() < 0.6 else ink, rng)
        canvas = Canvas(image, rng, title_font.path, body_font.path, ink, accent, surface, self.photos)
        (self.layouts.get(layout_name) or layouts.NAMED_ONLY[layout_name])(canvas, content)
        out = self._finish(image, rng)
        if layout_name in layouts.PLAIN_GROUND:  # record what is visible, not what was painted over
            bg_style, frame_style = "plain", "none"
        info = CardInfo(
            family=self.family.value,
            layout=layout_name,
            lang=lang,
            topic=content.topic,
            title_font=title_font.spec.name,
            body_font=body_font.spec.name,
            background=bg_style,
            frame=frame_style,
            width=out.width,
            height=out.height,
        )
        return out, info

    def _finish(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        w, h = image.size
        scale = self.size / max(w, h)
        out = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
        roll = rng.random()
        if roll < 0.15:
            out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
        elif roll < 0.25:  # an upload that was once small: down- then up-sampled
            f = rng.uniform(0.4, 0.7)
            small = out.resize(
                (max(1, int(out.width * f)), max(1, int(out.height * f))), Image.Resampling.BILINEAR
            )
            out = small.resize(out.size, Image.Resampling.BILINEAR)
        return out.convert("RGB")
