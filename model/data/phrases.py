"""Phrase banks for announcement cards, split into a TRAIN and a HELD-OUT family.

Each bank holds templates for the kinds of cards marketplace shops post instead of a product
picture: closures, shipping notices, holidays, "read before ordering", size charts, price lists and
sale banners, in Japanese and English. The two families share no template string, so cards of the
HELD-OUT family carry wording the model never saw. Templates may contain `{m}`, `{d}`, `{m2}`,
`{d2}`, `{y}`, `{pct}` and `{shop}` fields, filled from the card's random generator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from model.data.fonts import Family


@dataclass(frozen=True)
class PhraseBank:
    """Templates of one family and one language.

    Attributes:
        titles: headline templates per card topic.
        bodies: body-line templates per card topic.
        list_items: short lines for bulleted lists ("read before ordering" rules).
        table_headers: header rows for size charts.
        table_row_labels: row labels for size charts (sizes).
        price_items: item names for price lists.
        shops: shop names used in signatures.
        sale_words: big words for sale banners.
    """

    titles: dict[str, tuple[str, ...]]
    bodies: dict[str, tuple[str, ...]]
    list_items: tuple[str, ...]
    table_headers: tuple[tuple[str, ...], ...]
    table_row_labels: tuple[tuple[str, ...], ...]
    price_items: tuple[str, ...]
    shops: tuple[str, ...]
    sale_words: tuple[str, ...] = field(default_factory=tuple)

    def all_strings(self) -> set[str]:
        """Every template string in the bank (used to prove the families are disjoint)."""
        out: set[str] = set()
        for group in (*self.titles.values(), *self.bodies.values()):
            out.update(group)
        out.update(self.list_items, self.price_items, self.shops, self.sale_words)
        for row in (*self.table_headers, *self.table_row_labels):
            out.add(" | ".join(row))
        return out


TOPICS: tuple[str, ...] = ("closure", "shipping", "holiday", "read_first", "restock", "thanks")

_JA_TRAIN = PhraseBank(
    titles={
        "size_chart": ("サイズ表", "サイズについて", "サイズガイド"),
        "price_list": ("送料について", "料金表", "オプション料金"),
        "closure": ("臨時休業のお知らせ", "店休日のお知らせ", "休業日のご案内", "一時休止のお知らせ"),
        "shipping": (
            "年末年始の発送について",
            "発送についてのお知らせ",
            "配送遅延のお知らせ",
            "発送スケジュール",
        ),
        "holiday": ("夏季休業のお知らせ", "年末年始休業のお知らせ", "GW休業のお知らせ", "お盆休みのご案内"),
        "read_first": ("ご購入前にお読みください", "ご注文の前に", "必ずお読みください", "ご利用案内"),
        "restock": ("再入荷のお知らせ", "次回入荷予定", "新作入荷のお知らせ"),
        "thanks": ("いつもありがとうございます", "開店1周年", "感謝を込めて"),
    },
    bodies={
        "closure": (
            "{m}月{d}日(金)は臨時休業とさせていただきます",
            "誠に勝手ながら{m}月{d}日〜{m2}月{d2}日はお休みをいただきます",
            "期間中のご注文は{m2}月{d2}日以降順次発送いたします",
            "ご不便をおかけしますがよろしくお願いいたします",
            "お問い合わせへの返信もお休みさせていただきます",
        ),
        "shipping": (
            "{m}月{d}日までのご注文は年内に発送いたします",
            "配送状況により到着が遅れる場合がございます",
            "発送は{m2}月{d2}日より再開いたします",
            "あらかじめご了承くださいませ",
            "通常2〜3営業日以内に発送しております",
        ),
        "holiday": (
            "{m}月{d}日〜{m2}月{d2}日まで夏季休業となります",
            "休業期間中もご注文は受け付けております",
            "休業明けに順番に対応させていただきます",
            "皆さまよいお休みをお過ごしください",
        ),
        "read_first": (
            "商品の色味はモニターにより異なる場合がございます",
            "ハンドメイドのため一点ずつ風合いが異なります",
            "お客様都合による返品はお受けしておりません",
            "ご注文後のキャンセルはご遠慮ください",
        ),
        "restock": (
            "人気の商品が{m}月{d}日に再入荷いたします",
            "数量限定のためお早めにどうぞ",
            "入荷次第こちらでお知らせいたします",
        ),
        "thanks": (
            "皆さまのおかげで{y}年を迎えることができました",
            "これからもどうぞよろしくお願いいたします",
            "心を込めてお届けいたします",
        ),
    },
    list_items=(
        "・ご注文確定後の変更はできません",
        "・ラッピングは無料で承ります",
        "・不良品の場合は到着後7日以内にご連絡ください",
        "・海外への発送は行っておりません",
        "・お支払いは前払いのみとなります",
        "・写真の小物は付属しません",
        "・在庫切れの場合はご連絡いたします",
        "・土日祝日は発送をお休みしております",
    ),
    table_headers=(
        ("サイズ", "着丈", "身幅", "袖丈"),
        ("サイズ", "胸囲", "ウエスト", "ヒップ"),
        ("サイズ", "全長", "幅", "重さ"),
    ),
    table_row_labels=(("S", "M", "L", "XL"), ("90", "100", "110", "120", "130"), ("小", "中", "大")),
    price_items=("送料", "ラッピング", "ネコポス", "宅急便", "名入れ", "オーダー料金", "速達"),
    shops=("手作り雑貨 こもれび", "店主", "atelier hana", "スタッフ一同", "くらしの道具店"),
    sale_words=("SALE", "セール開催中", "全品{pct}%OFF", "期間限定", "送料無料"),
)

_JA_HELDOUT = PhraseBank(
    titles={
        "size_chart": ("寸法表", "サイズのご案内", "採寸表"),
        "price_list": ("価格表", "料金のご案内", "追加料金一覧"),
        "closure": ("お休みのお知らせ", "営業停止のお知らせ", "一時閉店のご案内", "臨時閉店"),
        "shipping": ("配送に関するご案内", "出荷停止のお知らせ", "お届け日について", "配達日数のご案内"),
        "holiday": ("冬季休暇のお知らせ", "連休中の営業について", "年始営業のご案内", "シルバーウィーク休業"),
        "read_first": ("ご注文前の注意事項", "購入前の確認事項", "お買い物ガイド", "注意事項"),
        "restock": ("販売再開のお知らせ", "予約受付開始", "入荷待ちのご案内"),
        "thanks": ("ご愛顧に感謝します", "おかげさまで{y}周年", "ありがとうの気持ち"),
    },
    bodies={
        "closure": (
            "店主体調不良のため{m}月{d}日まで営業をお休みします",
            "再開日は改めてご連絡いたします",
            "ご迷惑をおかけし申し訳ございません",
            "現在ご注文いただいた分は責任を持って発送します",
        ),
        "shipping": (
            "天候の影響でお届けに数日かかる場合があります",
            "{m}月{d}日以降のご注文は{m2}月{d2}日より出荷となります",
            "離島へのお届けは追加送料がかかります",
            "お届け日時の指定はできかねます",
        ),
        "holiday": (
            "{m}月{d}日から{m2}月{d2}日までお休みをいただきます",
            "連休中のお問い合わせは休み明けに返信します",
            "新年は{m2}月{d2}日から通常営業いたします",
        ),
        "read_first": (
            "素材の特性上小さな傷や色むらがあります",
            "サイズは平置きで採寸しております",
            "初期不良以外の交換は承っておりません",
            "ご不明点はメッセージでお問い合わせください",
        ),
        "restock": (
            "ご好評につき販売を再開しました",
            "次回の販売は{m}月{d}日20時からです",
            "予約分は{m2}月下旬のお届けとなります",
        ),
        "thanks": (
            "たくさんのご注文をいただき感謝しております",
            "今後とも変わらぬご愛顧をお願い申し上げます",
        ),
    },
    list_items=(
        "1. 在庫は実店舗と共有しております",
        "2. 返品時の送料はお客様負担です",
        "3. 領収書の発行は承っておりません",
        "4. 代引きはご利用いただけません",
        "5. 商品到着後はすぐに検品をお願いします",
        "※ 画像と実物で色が異なる場合があります",
        "※ ギフト包装は有料です",
    ),
    table_headers=(
        ("号数", "肩幅", "バスト", "総丈"),
        ("表記", "足長", "足幅"),
        ("容量", "高さ", "直径", "価格"),
    ),
    table_row_labels=(
        ("5号", "7号", "9号", "11号"),
        ("22.5", "23.0", "23.5", "24.0", "24.5"),
        ("SS", "F", "LL"),
    ),
    price_items=("基本料金", "オプション", "追加パーツ", "箱代", "保証", "特急仕上げ"),
    shops=("工房つむぎ", "管理人", "ことり商店", "店長より", "おはな堂"),
    sale_words=("大感謝祭", "決算セール", "最大{pct}%引き", "本日限り", "ポイント5倍"),
)

_EN_TRAIN = PhraseBank(
    titles={
        "size_chart": ("SIZE CHART", "Size Guide", "Sizing"),
        "price_list": ("Shipping Rates", "Price List", "Options & Prices"),
        "closure": ("TEMPORARY CLOSURE", "Shop Closed", "We are closed", "Store Holiday"),
        "shipping": ("Shipping Notice", "Holiday Shipping", "Shipping Delays", "Order Cut-off Dates"),
        "holiday": ("Summer Break", "Happy Holidays", "Holiday Hours", "Year-End Break"),
        "read_first": (
            "PLEASE READ BEFORE ORDERING",
            "Before You Buy",
            "Important Information",
            "Shop Policies",
        ),
        "restock": ("Back in Stock", "Restock Notice", "New Arrivals"),
        "thanks": ("Thank You", "Thank you for shopping", "Our {y} anniversary"),
    },
    bodies={
        "closure": (
            "The shop will be closed from {m}/{d} to {m2}/{d2}",
            "Orders placed during this time ship after {m2}/{d2}",
            "We apologise for any inconvenience",
            "Messages will be answered when we return",
        ),
        "shipping": (
            "Order by {m}/{d} for delivery before the holidays",
            "Shipping may take longer than usual",
            "All orders ship within 3 business days",
            "Tracking numbers are sent by email",
        ),
        "holiday": (
            "We are taking a short break until {m2}/{d2}",
            "You can still place orders during the break",
            "Thank you for your patience",
        ),
        "read_first": (
            "Colours may look different on your screen",
            "Each item is handmade and unique",
            "No returns or exchanges on sale items",
            "Please check the size chart before ordering",
        ),
        "restock": (
            "Our best sellers are back on {m}/{d}",
            "Limited quantities available",
            "Follow the shop for updates",
        ),
        "thanks": (
            "We truly appreciate your support",
            "See you again soon",
        ),
    },
    list_items=(
        "- Gift wrapping is free",
        "- We do not ship overseas",
        "- Payment must be received before shipping",
        "- Props in photos are not included",
        "- Contact us within 7 days of delivery",
        "- Custom orders take 2-3 weeks",
    ),
    table_headers=(("SIZE", "LENGTH", "CHEST", "SLEEVE"), ("SIZE", "WAIST", "HIP", "INSEAM")),
    table_row_labels=(("S", "M", "L", "XL"), ("XS", "S", "M", "L", "XL")),
    price_items=("Standard shipping", "Express", "Gift box", "Engraving", "Custom colour"),
    shops=("The Little Shop", "Studio Maple", "- the team", "Handmade with love"),
    sale_words=("SALE", "{pct}% OFF", "FREE SHIPPING", "LIMITED TIME"),
)

_EN_HELDOUT = PhraseBank(
    titles={
        "size_chart": ("Measurements", "Fit Guide", "How it Fits"),
        "price_list": ("Our Prices", "Rates", "Extras Menu"),
        "closure": ("Closed Until Further Notice", "OUT OF OFFICE", "Shop Paused", "Closing Notice"),
        "shipping": ("Delivery Information", "Dispatch Update", "Postal Delays", "About Delivery Times"),
        "holiday": ("Winter Holidays", "Long Weekend Notice", "New Year Schedule", "Seasonal Break"),
        "read_first": ("Read This First", "Terms of Sale", "Ordering Guide", "Things to Know"),
        "restock": ("Pre-orders Open", "Coming Soon", "Sold Out - More Soon"),
        "thanks": ("With Gratitude", "Celebrating {y} Years", "Thanks a Million"),
    },
    bodies={
        "closure": (
            "We are away from {m}/{d} and will reopen on {m2}/{d2}",
            "The shop is in vacation mode for now",
            "Existing orders will still be posted",
        ),
        "shipping": (
            "Parcels are dispatched every Monday and Thursday",
            "Remote areas may need extra days",
            "Orders after {m}/{d} will be posted on {m2}/{d2}",
            "Delivery dates cannot be guaranteed",
        ),
        "holiday": (
            "Our studio is closed between {m}/{d} and {m2}/{d2}",
            "Replies may be slower over the holidays",
            "Wishing you a peaceful season",
        ),
        "read_first": (
            "Measurements are taken with the garment laid flat",
            "Minor marks are part of the natural material",
            "Exchanges only for damaged items",
            "Questions? Send us a message any time",
        ),
        "restock": (
            "The next drop is on {m}/{d} at 8pm",
            "Pre-ordered items ship in late {m2}",
        ),
        "thanks": (
            "Every order means the world to us",
            "Here is to many more years together",
        ),
    },
    list_items=(
        "1) Stock is shared with our market stall",
        "2) Buyers pay return postage",
        "3) Receipts are not included",
        "* Colours vary slightly between batches",
        "* Gift wrap is available for a small fee",
    ),
    table_headers=(("Size", "Shoulder", "Bust", "Length"), ("EU", "US", "UK", "cm")),
    table_row_labels=(("6", "8", "10", "12"), ("36", "37", "38", "39", "40")),
    price_items=("Base price", "Add-on charm", "Rush order", "Insurance", "Extra packaging"),
    shops=("Fern & Flint", "Workshop Nine", "Love, the makers", "Bluebird Goods"),
    sale_words=("CLEARANCE", "Up to {pct}% off", "TODAY ONLY", "BUY 2 GET 1"),
)

BANKS: dict[Family, dict[str, PhraseBank]] = {
    Family.TRAIN: {"ja": _JA_TRAIN, "en": _EN_TRAIN},
    Family.HELDOUT: {"ja": _JA_HELDOUT, "en": _EN_HELDOUT},
    # CHECK cards differ from TRAIN ones in fonts and designs, and keep TRAIN's words: at 64 px the
    # words are a texture, and HELD-OUT's must stay unseen by anything that steers a recipe.
    Family.CHECK: {"ja": _JA_TRAIN, "en": _EN_TRAIN},
}

# Small words printed on products (T-shirts, labels). Disjoint per family like the card banks.
PRINTED_WORDS: dict[Family, tuple[str, ...]] = {
    Family.TRAIN: (
        "LOVE",
        "TOKYO",
        "organic",
        "SUMMER",
        "HELLO",
        "cotton 100%",
        "ありがとう",
        "さくら",
        "ORIGINAL",
        "No.7",
        "BROOKLYN",
        "coffee",
        "はちみつ",
        "HANDMADE",
    ),
    Family.HELDOUT: (
        "PEACE",
        "OSAKA",
        "natural",
        "ALOHA",
        "good vibes",
        "wool",
        "こんにちは",
        "ねこ",
        "VINTAGE",
        "EST. 1998",
        "KYOTO",
        "tea",
        "みそ",
        "CRAFT",
    ),
}
# No folder draws printed words in the CHECK family; the manifest lists TRAIN's for it.
PRINTED_WORDS[Family.CHECK] = PRINTED_WORDS[Family.TRAIN]


def fill(template: str, rng: np.random.Generator, shops: tuple[str, ...]) -> str:
    """Fill a template's date, percentage, year and shop fields from `rng`."""
    m = int(rng.integers(1, 13))
    d = int(rng.integers(1, 29))
    m2 = m % 12 + 1 if rng.random() < 0.5 else m
    d2 = int(rng.integers(1, 29))
    return template.format(
        m=m,
        d=d,
        m2=m2,
        d2=d2,
        y=int(rng.integers(2, 16)),
        pct=int(rng.choice([10, 15, 20, 30, 40, 50, 70])),
        shop=str(rng.choice(list(shops))),
    )
