"""Prometheus metrics of one worker, on a registry of its own (no global state, several workers per test)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_E2E_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)


class WorkerMetrics:
    """Every metric the worker exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """Create the metrics on `registry` (a fresh one by default)."""
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "alocc_events_total",
            "Events finished, by outcome (scored, excluded, dead_lettered, stale).",
            ["outcome"],
            registry=r,
        )
        self.dead_letters = Counter(
            "alocc_dead_letters_total", "Dead-lettered events by reason.", ["reason"], registry=r
        )
        self.published = Counter(
            "alocc_exclusion_events_total", "Exclusion events published.", ["excluded"], registry=r
        )
        self.batch_size = Histogram(
            "alocc_batch_size",
            "Images per model call.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.stage_seconds = Histogram(
            "alocc_stage_seconds",
            "Latency per stage (fetch, decode, score, verify, store, commit).",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upload_to_decision = Histogram(
            "alocc_upload_to_decision_seconds",
            "From the event's uploaded_at to the committed decision.",
            buckets=_E2E_BUCKETS,
            registry=r,
        )
        self.upload_to_score = Histogram(
            "alocc_upload_to_score_seconds",
            "From the event's uploaded_at to its score record written in Redis (what search reads).",
            buckets=_E2E_BUCKETS,
            registry=r,
        )
        self.decisions = Counter(
            "alocc_decisions_total",
            "Stored decisions by the stage that decided (model, verifier, model_fallback); the verifier's "
            "share of uploads is verifier + model_fallback over the total.",
            ["decided_by"],
            registry=r,
        )
        self.verifier_reads = Counter(
            "alocc_verifier_reads_total",
            "Text verifier reads by result (read; layout_card: a card on its layout alone, nothing read; "
            "shape_card: a line of glyphs read as nothing, made a card by the gate's shape rule alone, "
            "where products cut out on a white ground would show as false positives; unconfident: a reading "
            "the rule would make a card, kept a product by the rules' floor for reading no character "
            "confidently, where cards in fonts read without confidence would show as misses; second_card "
            "and second_read: a page the first reading left a product, read again by the second engine, "
            "which made it a card or not (where products with printed words would show as false "
            "positives); sheet_second_card and sheet_second_read: a best sheet the sheet reading left short "
            "of a card, read again by the second engine; failed: the model's decision stood).",
            ["result"],
            registry=r,
        )
        self.verifier_sends = Counter(
            "alocc_verifier_sends_total",
            "Images sent to the text verifier, by route: model_score (at or above the card's send_from), "
            "quadrants (a corner of the picture scores like a card: the card's parts_send_from), "
            "plain_line (the gate: one line on a plain ground; its own rule decides) or sheet_reading (only "
            "the picture's best sheet is read: the sheet route's read_from). The gate's and the "
            "quadrants' shares are costs the card's budget assumed from calibration photos: watch them on "
            "real uploads.",
            ["route"],
            registry=r,
        )
        self.verifier_read_seconds = Histogram(
            "alocc_verifier_read_seconds",
            "Time of each verifier read (download included), by the route that sent the image (as "
            "alocc_verifier_sends_total): the sum over events says which route the OCR's cost comes from.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.card_band = Counter(
            "alocc_card_band_total",
            "Images the model made cards without a read (at or above the card's card_from). The band assumes "
            "unseen photos score under it, as every calibration source did: a rising share of uploads here "
            "is the first sign of a photo source it does not cover.",
            registry=r,
        )
        self.sheet_cards = Counter(
            "alocc_sheet_cards_total",
            "Images the sheet route made cards without a read: a sheet found in the picture (a photographed "
            "notice), straightened, scored at or above the route's bound. Like the card band, a rising share "
            "points at a photo source whose frames, screens or covers the bound does not cover.",
            registry=r,
        )
        self.verifier_in_flight = Gauge(
            "alocc_verifier_in_flight", "Images the text verifier is downloading or reading.", registry=r
        )
        self.in_flight = Gauge("alocc_in_flight_events", "Events consumed but not yet committed.", registry=r)
        self.consumer_lag = Gauge(
            "alocc_consumer_lag",
            "High watermark minus position, per assigned partition.",
            ["partition"],
            registry=r,
        )
        self.commits = Counter(
            "alocc_commits_total", "Commit steps, by result (ok, aborted).", ["result"], registry=r
        )
        self.rebalances = Counter(
            "alocc_rebalances_total", "Partitions assigned, revoked or lost.", ["kind"], registry=r
        )
        self.skipped_messages = Counter(
            "alocc_skipped_messages_total",
            "Messages not processed: unassigned (the partition was revoked or lost after they were "
            "fetched; its new owner processes them), already_committed (redelivered below the offset this "
            "worker committed).",
            ["reason"],
            registry=r,
        )
