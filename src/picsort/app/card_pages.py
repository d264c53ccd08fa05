"""The page's cards, newest first, shown a page at a time, and what the page keeps of each photo beside its card
(:class:`Upload`) under a memory cap: past MAX_KEPT_BYTES older cards let go of their photo (they can no longer
be labelled), past MAX_CARDS the oldest cards are closed. Nothing here classifies or saves: the cards come from
`picsort.app.intake`, the labels are `picsort.app.shared_labels`'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import ipywidgets as widgets
from PIL import Image

from picsort.app.cards import ProblemCard, ResultCard
from picsort.app.page_text import html_widget
from picsort.inference.classify import Prediction
from picsort.photos.images import image_from_bytes, jpeg

__all__ = ["CARDS_PER_PAGE", "MAX_CARDS", "MAX_KEPT_BYTES", "CardPages", "Upload"]

CARDS_PER_PAGE = 60
# The page keeps a card's photo (its bytes, to save them under a label, and its decoded picture, for "Why?") while
# the newest cards' fit in MAX_KEPT_BYTES; older cards can no longer be labelled. Past MAX_CARDS the oldest cards
# are closed.
MAX_CARDS = 1000
MAX_KEPT_BYTES = 200 * 1024 * 1024


@dataclass(eq=False)
class Upload:
    """What the page keeps of one classified photo beside its card: the bytes, to save under a label (None once
    the memory cap let them go), the name as uploaded, the model's answer (recorded with the label), and the
    picture "Why?" explains: the classify decode shrunk, while kept; a JPEG of it once let go (a small decode then,
    never the photo's). `decoded_whole`: classifying decoded the bytes whole, so they are known usable."""

    name: str
    data: bytes | None
    prediction: Prediction
    picture: Image.Image | bytes = b""
    decoded_whole: bool = False
    sha256: str | None = None  # known once the store has saved the photo (the store names it by its SHA-256)

    @property
    def kept_bytes(self) -> int:
        """The memory this photo holds: its bytes and its decoded picture (8 bits a channel)."""
        held = len(self.data) if self.data is not None else 0
        if isinstance(self.picture, Image.Image):
            held += self.picture.width * self.picture.height * len(self.picture.getbands())
        return held

    def let_go(self) -> None:
        """Drop the bytes (no label any more) and keep the picture as a JPEG (a tenth of the memory)."""
        self.data = None
        if isinstance(self.picture, Image.Image):
            self.picture = jpeg(self.picture, max(self.picture.size), quality=90)[0]

    def explain_picture(self) -> Image.Image:
        """The picture to explain: as classifying decoded it while kept, else its JPEG decoded."""
        if isinstance(self.picture, Image.Image):
            return self.picture
        return image_from_bytes(self.picture, name="explain")


class CardPages:
    """Every card of the page (`cards`, newest first), each result card's `Upload` (`uploads`), and the widgets
    that show them a page at a time (`cards_box`, `pager`)."""

    def __init__(self) -> None:
        self.cards: list[ResultCard | ProblemCard] = []
        self.uploads: dict[ResultCard, Upload] = {}  # one dict for the page's life: the labels read it too
        self.page = 0
        self.previous_page = widgets.Button(description="‹ Newer", layout=widgets.Layout(width="auto"))
        self.next_page = widgets.Button(description="Older ›", layout=widgets.Layout(width="auto"))
        self.previous_page.on_click(lambda _: self.show_page(self.page - 1))
        self.next_page.on_click(lambda _: self.show_page(self.page + 1))
        self.page_note = html_widget("", "picsort-page-note")
        self.pager = widgets.HBox([self.previous_page, self.page_note, self.next_page])
        self.pager.add_class("picsort-pager")
        self.cards_box = widgets.VBox([])
        self.cards_box.add_class("picsort-cards")
        self.show()

    def add(self, card: ResultCard | ProblemCard, upload: Upload | None = None, *, keep: int = 1) -> None:
        """Put `card` on top (its `upload` beside it); the newest `keep` cards (the selection arriving) stay open."""
        if upload is not None:
            self.uploads[card] = upload
        self.cards.insert(0, card)
        self._keep_within_limits(keep)
        self.show()

    def put_first(self, cards: Sequence[ResultCard | ProblemCard]) -> None:
        """The newest len(cards) cards, in this order (a selection sorted at its end)."""
        self.cards[: len(cards)] = cards
        self.show()

    def clear(self) -> None:
        """Close every card and let go of every photo."""
        for card in self.cards:
            card.close()
        self.uploads.clear()
        self.cards, self.page = [], 0
        self.show()

    def _keep_within_limits(self, keep: int) -> None:
        """Close the cards past MAX_CARDS; past MAX_KEPT_BYTES, older cards let go of their photo."""
        while len(self.cards) > max(MAX_CARDS, keep):
            closed = self.cards.pop()
            self.uploads.pop(closed, None)
            closed.close()
        kept = 0
        for card in self.cards:
            upload = self.uploads.get(card)
            if upload is None or upload.data is None:
                continue
            kept += upload.kept_bytes
            if kept > MAX_KEPT_BYTES and card is not self.cards[0]:  # the newest can always be labelled
                upload.let_go()
                card.cannot_label()

    def show_page(self, page: int) -> None:
        self.page = page
        self.show()

    def show(self) -> None:
        pages = max(1, -(-len(self.cards) // CARDS_PER_PAGE))
        self.page = min(max(self.page, 0), pages - 1)
        first = self.page * CARDS_PER_PAGE
        shown = self.cards[first: first + CARDS_PER_PAGE]
        self.cards_box.children = tuple(shown)
        self.pager.layout.display = "" if pages > 1 else "none"
        self.previous_page.disabled = self.page == 0
        self.next_page.disabled = self.page >= pages - 1
        if shown:
            self.page_note.value = (f"Page {self.page + 1} of {pages} (cards {first + 1}–{first + len(shown)} "
                                    f"of {len(self.cards)})")
