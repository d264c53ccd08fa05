"""What the app's unit tests share: the shipped model, a label folder, a visitor's page, the example photos,
and helpers to make and read photos and pages (imported from here by the test files)."""

from __future__ import annotations

import io
import json
import shutil
import warnings
from pathlib import Path

import ipywidgets as widgets
import pytest
from PIL import Image

from picsort.app.page import ClassifierApp
from picsort.inference.classify import load_model
from picsort.photos.labels import LabelStore
from rehearsal.phone_sized import phone_sized

REPO = Path(__file__).resolve().parents[3]


EXAMPLES = sorted((REPO / "examples").glob("*.jpg"))


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def live_widgets() -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return len(widgets.Widget.widgets)


def stored_images(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".") and p.suffix != ".jsonl"]


def manifest(labels: Path) -> list[dict]:
    return [json.loads(line) for line in (labels / "manifest.jsonl").read_text().splitlines()]


def shown(app: ClassifierApp) -> list[str]:
    """File names of the cards on the page, top to bottom."""
    return [card.name for card in app.cards_box.children]


def phone_photo(source: Path) -> bytes:
    """A phone-size JPEG made by upscaling a small photo."""
    return encode(phone_sized(Image.open(source).convert("RGB")), "JPEG", quality=90)


@pytest.fixture(scope="module")
def classifier():
    return load_model()


@pytest.fixture
def labels(tmp_path) -> Path:
    return tmp_path / "labels"


def visitor_page(classifier, labels: Path):
    """A visitor's page: a ClassifierApp with a store object of its own on the labels folder; its cards closed after."""
    page = ClassifierApp(classifier, LabelStore(labels, classifier.classes))
    yield page
    for card in list(page.cards):
        card.close()


@pytest.fixture
def app(classifier, labels) -> ClassifierApp:
    yield from visitor_page(classifier, labels)


@pytest.fixture(scope="module")
def photo() -> bytes:
    return EXAMPLES[0].read_bytes()


def model_with_classes(folder: Path, classes: list[str], **card_changes) -> Path:
    """A copy of the shipped model folder whose card names other classes (same number, same weights)."""
    folder.mkdir(parents=True)
    for name in ("model.safetensors", "reference.safetensors"):
        shutil.copyfile(REPO / "model" / name, folder / name)
    card = json.loads((REPO / "model" / "model.json").read_text())
    card.update(classes=classes, images_per_class={name: 10 for name in classes}, **card_changes)
    (folder / "model.json").write_text(json.dumps(card))
    return folder


def page_text(page: widgets.Widget) -> str:
    parts = []

    def walk(widget):
        if isinstance(widget, widgets.HTML) and "picsort-style" not in widget._dom_classes:
            parts.append(widget.value)
        for child in getattr(widget, "children", ()):
            walk(child)

    walk(page)
    return "\n".join(parts)
