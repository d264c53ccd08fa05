"""`picsort export-web`: a model folder as a static web site that classifies in the visitor's own browser.

The folder written holds `index.html` and its scripts (`static/`), `model.onnx` (`picsort.web.onnx_export`), the
model card (`model.json`, as the model folder has it), `site.json` (what the page needs: classes, sizes,
thresholds, keys, the CSV's columns) and ONNX Runtime Web under `vendor/` with its licence. Every file the page
asks for is in that folder, so any static file server serves it (`python -m http.server`, GitHub Pages), with no
internet. The page's answers are `picsort classify`'s (tests/unit/web, tests/end_to_end/test_web_page.py).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from picsort.batch.columns import results_header
from picsort.foundation.vocabulary import ACTION_KEYS, CLASS_KEYS, NONE_LABEL, NONE_TEXT, keys_help
from picsort.photos.images import MAX_IMAGE_PIXELS, MAX_UPLOAD_BYTES

ORT_VERSION = "1.31.1"  # onnxruntime-web, vendored in static/vendor (its README says how to move to another)
MAX_SITE_BYTES = 40 * 1000 * 1000
MODEL_FILE = "model.onnx"
SITE_FILE = "site.json"
STATIC_FILES = ("index.html", "page.css", "app.js", "resize.js", "store.js", "worker.js", "favicon.svg")
VENDOR_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm", "LICENSE",
                "README.md", "SHA256SUMS")


class SiteError(Exception):
    """The site cannot be written there (a folder holding other things, or a site too large)."""


@dataclass(frozen=True)
class Site:
    """A site `write_site` wrote: its folder, its size in bytes and the classes it tells apart."""

    folder: Path
    size: int
    classes: tuple[str, ...]


def site_settings(classifier, model_bytes: bytes, title: str) -> dict:
    """`site.json`: what the page needs to prepare photos and to turn the network's outputs into answers."""
    check = classifier.none_of_these
    classes = list(classifier.classes)
    return {
        "title": title,
        "classes": classes,
        "size": classifier.size,
        "extra": classifier.extra,
        "threshold": classifier.threshold,
        "none_of_these": {"similarity_threshold": check.threshold if check.reference is not None else None,
                          "resemblance_threshold": check.resemblance_threshold},
        "none_label": NONE_LABEL,
        "none_text": NONE_TEXT,
        "class_keys": [CLASS_KEYS[i] if i < len(CLASS_KEYS) else "" for i in range(len(classes))],
        "action_keys": {action: key for action, (key, _) in ACTION_KEYS.items()},
        "keys_help": keys_help(classes),
        "results_header": results_header(classes),
        "max_upload_bytes": MAX_UPLOAD_BYTES,
        "max_image_pixels": MAX_IMAGE_PIXELS,
        "accepted_formats": "JPEG, PNG, WebP, GIF, BMP or AVIF",
        "model": MODEL_FILE,
        "model_id": hashlib.sha256(model_bytes).hexdigest()[:16],
        "onnxruntime_web": ORT_VERSION,
    }


def _check_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise SiteError(f"{out} is a file, not a folder: name a folder for the site")
    if out.is_dir() and any(out.iterdir()) and not (out / SITE_FILE).is_file():
        raise SiteError(f"{out} already holds other files: name an empty or new folder (or a site written before, "
                        "which is replaced)")


def write_site(out: Path | str, model: Path | str | None = None, *, classifier=None, title: str | None = None) -> Site:
    """Write the site for a model folder (`model`, default the shipped model) or a loaded `classifier` to `out`.

    `out` must be new, empty or a site written before (replaced). SiteError when it cannot be, or when the site
    would exceed MAX_SITE_BYTES (a larger network than a page should make every visitor download).
    """
    import importlib.util

    from picsort.inference.classify import Classifier
    from picsort.web.onnx_export import onnx_bytes

    out = Path(out)
    _check_folder(out)
    if importlib.util.find_spec("onnx") is None:
        raise SiteError("writing the page's model.onnx needs the onnx package: pip install -r requirements.txt "
                        "(or pip install onnx==1.23.2)")
    if classifier is None:
        classifier = Classifier(model)
    card = dict(classifier.card)
    model_bytes = onnx_bytes(classifier)
    title = title or card.get("data_source") or (Path(classifier.folder).name if classifier.folder else "classifier")
    settings = site_settings(classifier, model_bytes, str(title))
    static = resources.files("picsort.web") / "static"
    out.mkdir(parents=True, exist_ok=True)
    (out / "vendor").mkdir(exist_ok=True)
    for name in STATIC_FILES:
        (out / name).write_bytes((static / name).read_bytes())
    for name in VENDOR_FILES:
        (out / "vendor" / name).write_bytes((static / "vendor" / name).read_bytes())
    (out / MODEL_FILE).write_bytes(model_bytes)
    (out / "model.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    (out / SITE_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    size = sum(path.stat().st_size for path in out.rglob("*") if path.is_file())
    if size > MAX_SITE_BYTES:
        shutil.rmtree(out)
        raise SiteError(f"the site would be {size / 1e6:.1f} MB, over the {MAX_SITE_BYTES / 1e6:.0f} MB a page "
                        "should ask every visitor to download: export a smaller backbone (efficientnet_lite0)")
    return Site(out, size, tuple(classifier.classes))


def zipped_site(model: Path | str, name: str | None = None) -> tuple[str, bytes]:
    """(file name, bytes) of a zip holding the site for the model folder `model`, in one folder (`name`, default
    picsort-web-<date>-<time>): Teach mode's *Download web page*. Unzipped, any static file server serves it."""
    import datetime
    import io
    import tempfile
    import zipfile

    name = name or f"picsort-web-{datetime.datetime.now().strftime('%Y-%m-%d-%H%M')}"
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="picsort-web-") as temporary:
        site = write_site(Path(temporary) / name, model)
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(site.folder.rglob("*")):
                if path.is_file():
                    archive.write(path, f"{name}/{path.relative_to(site.folder).as_posix()}")
    return f"{name}.zip", buffer.getvalue()
