"""The cascade's second stage in the worker: the text verifier reads the images the model is unsure of.

Which images it reads and how their verdicts are made is `model.cascade_decisions.CascadeDecisions`.

`VerificationStage` runs the reads off the event loop. It downloads the image again, through its own
SSRF-safe fetcher with the same limits: the decode processes never send raw bytes back to the worker (that
would copy every upload across a pipe to serve the few the verifier reads). The reads run on a small thread
pool, each thread with its own OCR child process (`model.verifier.ocr_processes`: the engine's models stay
loaded, and a crash or hang of the engine costs one read), so a thread only waits, and the pool's size is
how many cores the verifier may take.

A read that fails (download error, a bad image, an engine timeout or crash) never loses the event and is
never dead-lettered: the model's own decision at its card's threshold stands, recorded as
`decided_by = "model_fallback"` with the reason.
"""

from __future__ import annotations

import concurrent.futures
import functools
import time
from dataclasses import dataclass

from model.cascade_decisions import (
    LayoutFirst,
    Reader,
    Readings,
    SecondAfter,
    SheetSecond,
    read_for_verdict,
)
from model.sheets import SheetSearch
from model.verifier.line_read import LineRead
from model.verifier.panel_read import PanelRead
from model.verifier.text_verifier import SheetReading
from worker.stages.prepare import Fetcher, fetch_then


@dataclass(frozen=True)
class Reading:
    """What the verifier made of one image (`read`: the page's, its best sheet's, its layout's and the second
    engine's features, each where read; `model.cascade_decisions.Readings`), and how long it took (download
    included)."""

    read: Readings
    seconds: float


class VerificationStage:
    """Downloads and reads images on a thread pool; `submit(url)` returns a future of `Reading`."""

    def __init__(
        self,
        fetcher: Fetcher,
        reader: Reader,
        *,
        workers: int,
        sheets: SheetSearch | None = None,
        input_size: int = 0,
    ) -> None:
        """Create the stage.

        Args:
            fetcher: Downloads bytes (normally its own `BackgroundFetcher`).
            reader: Reads an image with the verifier the model card names, with the worker's image limits.
            workers: Reads at once (each takes about one core while its engine runs).
            sheets: The sheet route's search, where the served cascade reads sheets: a picture's sheet is
                found again, as the decode processes found it for the model's input of `input_size`.
            input_size: The model's input side (with `sheets`).
        """
        self._fetcher = fetcher
        self._reader = reader
        self._sheets = sheets
        self._input_size = input_size
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="alocc-verify"
        )

    def submit(
        self,
        url: str,
        *,
        line_read: LineRead | None = None,
        panel_read: PanelRead | None = None,
        page: bool = True,
        sheet_slot: int | None = None,
        layout_first: LayoutFirst | None = None,
        second_after: SecondAfter | None = None,
        sheet_second: SheetSecond | None = None,
    ) -> concurrent.futures.Future[Reading]:
        """Download and read `url`: as a page where `page` (with `line_read` too, for the plain-line gate's
        images; `panel_read`, for the score route's), and its sheet in `sheet_slot` where given (the sheet
        route's reading); with `layout_first` (the layout band, on the score route), the page's layout is
        found first, and where it makes the picture a card nothing is read; with `second_after` (a cascade
        with a second reading), a page the first readings leave a product is read by the second engine too;
        with `sheet_second` (a sheet route with a second reading), so is a sheet the sheet reading leaves
        short of a card. The future raises on any failure (the caller falls back)."""
        if sheet_slot is not None and self._sheets is None:
            raise ValueError("this stage reads no sheets: the served cascade has no sheet reading")
        if not page and sheet_slot is None:
            raise ValueError("nothing to read: neither the page nor a sheet")
        read = functools.partial(
            self._read,
            line_read=line_read,
            panel_read=panel_read,
            page=page,
            sheet_slot=sheet_slot,
            layout_first=layout_first,
            second_after=second_after,
            sheet_second=sheet_second,
        )
        return fetch_then(self._fetcher, url, self._pool, read)

    def _read(
        self,
        data: bytes,
        fetch_s: float,
        result: concurrent.futures.Future[Reading],
        *,
        line_read: LineRead | None,
        panel_read: PanelRead | None,
        page: bool,
        sheet_slot: int | None,
        layout_first: LayoutFirst | None,
        second_after: SecondAfter | None,
        sheet_second: SheetSecond | None,
    ) -> None:
        started = time.monotonic()
        sheet = None
        if sheet_slot is not None:
            assert self._sheets is not None
            sheet = SheetReading(self._sheets, self._input_size, sheet_slot)
        try:
            read = read_for_verdict(
                self._reader,
                data,
                page=page,
                line_read=line_read,
                panel_read=panel_read,
                sheet=sheet,
                layout_first=layout_first,
                second_after=second_after,
                sheet_second=sheet_second,
            )
        except Exception as exc:  # noqa: BLE001 - any failure of one read falls back for that image only
            result.set_exception(exc)
            return
        result.set_result(Reading(read, fetch_s + time.monotonic() - started))

    def close(self) -> None:
        """Stop the read threads (reads not started are cancelled)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
