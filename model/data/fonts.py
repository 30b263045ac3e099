"""Fonts for the card generator, split into TRAIN, HELD-OUT and CHECK families.

The families share no font file, no package and no typeface design lineage where it could be
avoided (IPA, IPAex and Takao are all IPA-derived, so they all sit in TRAIN; Ume-, M+- and
IPA-derived fonts are kept out of CHECK). Fonts are looked up on the
system only; a missing family raises `FontsMissing` naming the Debian packages to install.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from model.data.dataset_errors import FontsMissing

FONT_ROOTS: tuple[Path, ...] = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))


class Family(StrEnum):
    """Which disjoint family of fonts / layouts / phrases a card is drawn from."""

    TRAIN = "train"
    HELDOUT = "heldout"
    CHECK = "check"  # a second set of unseen designs: neither trained on nor the evaluation set


class Script(StrEnum):
    """What a font can render: Latin only, or Japanese (kana + kanji) and Latin."""

    LATIN = "latin"
    JAPANESE = "ja"


@dataclass(frozen=True)
class FontSpec:
    """One font file the generator may use.

    Attributes:
        name: short stable identifier, recorded in manifests.
        relpath: path below one of `FONT_ROOTS`.
        package: the Debian package that installs it.
        script: the widest script it covers.
    """

    name: str
    relpath: str
    package: str
    script: Script


def _ja(name: str, relpath: str, package: str) -> FontSpec:
    return FontSpec(name, relpath, package, Script.JAPANESE)


def _la(name: str, relpath: str, package: str) -> FontSpec:
    return FontSpec(name, relpath, package, Script.LATIN)


TRAIN_FONTS: tuple[FontSpec, ...] = (
    _ja("ipa-gothic", "opentype/ipafont-gothic/ipag.ttf", "fonts-ipafont-gothic"),
    _ja("ipa-pgothic", "opentype/ipafont-gothic/ipagp.ttf", "fonts-ipafont-gothic"),
    _ja("ipa-mincho", "opentype/ipafont-mincho/ipam.ttf", "fonts-ipafont-mincho"),
    _ja("ipaex-gothic", "opentype/ipaexfont-gothic/ipaexg.ttf", "fonts-ipaexfont-gothic"),
    _ja("vl-gothic", "truetype/vlgothic/VL-Gothic-Regular.ttf", "fonts-vlgothic"),
    _ja("takao-pgothic", "truetype/takao-gothic/TakaoPGothic.ttf", "fonts-takao-gothic"),
    _ja("umeplus-gothic", "truetype/umeplus/umeplus-gothic.ttf", "fonts-umeplus"),
    _ja("mplus1-regular", "opentype/mplus/Mplus1-Regular.otf", "fonts-mplus"),
    _ja("mplus1-black", "opentype/mplus/Mplus1-Black.otf", "fonts-mplus"),
    _ja("mplus2-light", "opentype/mplus/Mplus2-Light.otf", "fonts-mplus"),
    _ja("mplus2-bold", "opentype/mplus/Mplus2-Bold.otf", "fonts-mplus"),
    _ja("motoya-maruberi", "truetype/motoya-l-maruberi/MTLmr3m.ttf", "fonts-motoya-l-maruberi"),
    _ja("kiloji", "truetype/kiloji/kiloji_p.ttf", "fonts-kiloji"),
    _la("dejavu-sans", "truetype/dejavu/DejaVuSans.ttf", "fonts-dejavu-core"),
    _la("dejavu-sans-bold", "truetype/dejavu/DejaVuSans-Bold.ttf", "fonts-dejavu-core"),
    _la("dejavu-serif", "truetype/dejavu/DejaVuSerif.ttf", "fonts-dejavu-core"),
    _la("liberation-sans-bold", "truetype/liberation/LiberationSans-Bold.ttf", "fonts-liberation"),
    _la("liberation-serif", "truetype/liberation/LiberationSerif-Regular.ttf", "fonts-liberation"),
    _la("liberation-narrow", "truetype/liberation/LiberationSansNarrow-Regular.ttf", "fonts-liberation"),
    _la("carlito", "truetype/crosextra/Carlito-Regular.ttf", "fonts-crosextra-carlito"),
    _la("open-sans", "truetype/open-sans/OpenSans-Regular.ttf", "fonts-open-sans"),
    _la("open-sans-extrabold", "truetype/open-sans/OpenSans-ExtraBold.ttf", "fonts-open-sans"),
    _la("lato-black", "truetype/lato/Lato-Black.ttf", "fonts-lato"),
    _la("lato-light", "truetype/lato/Lato-Light.ttf", "fonts-lato"),
)

HELDOUT_FONTS: tuple[FontSpec, ...] = (
    _ja("bizud-gothic", "truetype/bizud-gothic/BIZUDPGothic-Regular.ttf", "fonts-morisawa-bizud-gothic"),
    _ja("bizud-gothic-bold", "truetype/bizud-gothic/BIZUDGothic-Bold.ttf", "fonts-morisawa-bizud-gothic"),
    _ja("bizud-mincho", "truetype/bizud-mincho/BIZUDPMincho-Regular.ttf", "fonts-morisawa-bizud-mincho"),
    _ja("sawarabi-gothic", "truetype/sawarabi-gothic/sawarabi-gothic-medium.ttf", "fonts-sawarabi-gothic"),
    _ja("sawarabi-mincho", "truetype/sawarabi-mincho/sawarabi-mincho-medium.ttf", "fonts-sawarabi-mincho"),
    _ja("motoya-cedar", "truetype/motoya-l-cedar/MTLc3m.ttf", "fonts-motoya-l-cedar"),
    _ja("seto", "truetype/seto/setofont.ttf", "fonts-seto"),
    _ja("konatu", "truetype/konatu/Konatu.ttf", "fonts-konatu"),
    _la("free-sans", "truetype/freefont/FreeSans.ttf", "fonts-freefont-ttf"),
    _la("free-serif-bold", "truetype/freefont/FreeSerifBold.ttf", "fonts-freefont-ttf"),
    _la("nimbus-sans-bold", "opentype/urw-base35/NimbusSans-Bold.otf", "fonts-urw-base35"),
    _la("urw-bookman", "opentype/urw-base35/URWBookman-Light.otf", "fonts-urw-base35"),
    _la("urw-gothic", "opentype/urw-base35/URWGothic-Demi.otf", "fonts-urw-base35"),
    _la("c059", "opentype/urw-base35/C059-Roman.otf", "fonts-urw-base35"),
    _la("roboto", "truetype/roboto/unhinted/RobotoTTF/Roboto-Regular.ttf", "fonts-roboto-unhinted"),
    _la(
        "roboto-condensed-bold", "truetype/roboto/unhinted/RobotoCondensed-Bold.ttf", "fonts-roboto-unhinted"
    ),
    _la("comic-neue", "opentype/comic-neue/ComicNeue-Bold.otf", "fonts-comic-neue"),
    _la("caladea", "truetype/crosextra/Caladea-Regular.ttf", "fonts-crosextra-caladea"),
    _la("cantarell", "opentype/cantarell/Cantarell-Regular.otf", "fonts-cantarell"),
)

CHECK_FONTS: tuple[FontSpec, ...] = (
    _ja("wqy-microhei", "truetype/wqy/wqy-microhei.ttc", "fonts-wqy-microhei"),
    _ja("dejima-mincho", "truetype/dejima-mincho/dejima-mincho-r227.ttf", "fonts-dejima-mincho"),
    _ja("reggae-one", "truetype/reggae/ReggaeOne-Regular.ttf", "fonts-reggae"),
    _ja("dotgothic16", "truetype/dotgothic16/DotGothic16-Regular.ttf", "fonts-dotgothic16"),
    _ja("aoyagi-soseki", "truetype/aoyagi-soseki/aoyagi-soseki.ttf", "fonts-aoyagi-soseki"),
    _la("arimo-bold", "truetype/croscore/Arimo-Bold.ttf", "fonts-croscore"),
    _la("tinos", "truetype/croscore/Tinos-Regular.ttf", "fonts-croscore"),
    _la("eb-garamond", "opentype/ebgaramond/EBGaramond12-Regular.otf", "fonts-ebgaramond"),
    _la("libertine-bold", "opentype/linux-libertine/LinLibertine_RB.otf", "fonts-linuxlibertine"),
    _la("biolinum", "opentype/linux-libertine/LinBiolinum_R.otf", "fonts-linuxlibertine"),
    _la("league-spartan-bold", "opentype/league-spartan/LeagueSpartan-Bold.otf", "fonts-league-spartan"),
    _la("quicksand", "truetype/quicksand/Quicksand-Medium.ttf", "fonts-quicksand"),
    _la("jura", "opentype/jura/Jura-Medium.otf", "fonts-jura"),
)

FAMILY_FONTS: dict[Family, tuple[FontSpec, ...]] = {
    Family.TRAIN: TRAIN_FONTS,
    Family.HELDOUT: HELDOUT_FONTS,
    Family.CHECK: CHECK_FONTS,
}


def font_packages(family: Family | None = None) -> list[str]:
    """The Debian packages that install the fonts of `family` (every family when None)."""
    families = [family] if family is not None else list(Family)
    return sorted({spec.package for fam in families for spec in FAMILY_FONTS[fam]})


def locate(spec: FontSpec) -> Path | None:
    """The installed path of `spec`, or None when its package is not installed."""
    for root in FONT_ROOTS:
        candidate = root / spec.relpath
        if candidate.is_file():
            return candidate
    return None


@dataclass(frozen=True)
class ResolvedFont:
    """A font spec with its installed file and the characters its cmap covers."""

    spec: FontSpec
    path: Path
    charset: frozenset[int]

    def covers(self, text: str) -> bool:
        """Whether every non-space character of `text` has a glyph in this font."""
        return all(ord(ch) in self.charset for ch in text if not ch.isspace())


@functools.cache
def _charset(path: Path) -> frozenset[int]:
    # fontTools ships with matplotlib; reading the cmap lets us avoid tofu boxes in cards.
    from fontTools.ttLib import TTFont

    with TTFont(str(path), lazy=True, fontNumber=0) as font:
        cmap = font.getBestCmap() or {}
        return frozenset(cmap)


@functools.cache
def resolve_family(family: Family) -> tuple[ResolvedFont, ...]:
    """All fonts of `family`, located and with their character coverage.

    Raises:
        FontsMissing: when any font of the family is not installed; the message names the
            Debian packages to install.
    """
    resolved: list[ResolvedFont] = []
    missing: set[str] = set()
    for spec in FAMILY_FONTS[family]:
        path = locate(spec)
        if path is None:
            missing.add(spec.package)
            continue
        resolved.append(ResolvedFont(spec, path, _charset(path)))
    if missing:
        raise FontsMissing(
            f"fonts of the {family.value} family are not installed; install the Debian packages: "
            f"apt-get install {' '.join(sorted(missing))}"
        )
    return tuple(resolved)
