"""Where training photos come from: DuckDuckGo image search, a local folder with one sub-folder per class, or
the app's label store (its folder, or the zip the app's "Download labels" gives).

Every way gives the same layout, `dest/<class>/<hash>.<ext>` (the first 16 hex digits of the photo's SHA-256),
so the notebook does not care, and one photo has one name whichever way it came.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from picsort.foundation import folders
from picsort.foundation.files import write_atomically
from picsort.foundation.shown_text import human_bytes
from picsort.foundation.vocabulary import MANIFEST_NAME, NONE_LABEL, label_order
from picsort.photos.download import DownloadReport, download_images
from picsort.photos.images import MAX_UPLOAD_BYTES, UnusableImageError, usable_image_extension
from picsort.photos.labels import LabelStore, stored_name_problem
from picsort.photos.photo_folders import photos_by_class
from picsort.photos.search import search_categories

__all__ = ["GATHERED_NAME", "LabelledPhoto", "LabelsGathered", "class_folders", "gather_from_folder",
           "gather_from_search", "gather_labels", "is_label_store", "label_store_folder", "labels_to_review"]

# In `dest`: which labelled photos gather_labels put there, and under which label (hidden: fastai skips it).
GATHERED_NAME = ".labels-gathered.json"
# In an unpacked labels zip: what in the zip was refused, and why (hidden: not a label folder).
REFUSED_NAME = ".refused.json"
_MAX_MANIFEST_BYTES = 64 * 1024 * 1024
# A labels zip larger than these is not one the app wrote (a workshop labels hundreds of photos).
_MAX_ZIP_MEMBERS = 100_000
_MAX_ZIP_BYTES = 16 * 1024 ** 3
_REFUSALS_SHOWN = 5


def categories_from_text(text: str) -> dict[str, str]:
    """Categories (folder name -> search term) from `PICSORT_CATEGORIES`'s text: comma-separated folder names, each
    with `=search term` or searched for by its name ("church, gas_pump=gas pump"). ValueError names a bad one."""
    from picsort.foundation.vocabulary import check_class_names

    pairs = [(name.strip(), " ".join(term.split())) for name, _, term in
             (item.partition("=") for item in text.split(",") if item.strip())]
    try:
        check_class_names([name for name, _ in pairs])  # one rule for names; a name given twice is refused too
    except ValueError as error:
        raise ValueError(f"PICSORT_CATEGORIES={text!r}: {error}") from None
    categories = {name: term or name.replace("_", " ") for name, term in pairs}
    if len(categories) < 2:
        raise ValueError(f"PICSORT_CATEGORIES={text!r}: name at least two categories, separated by commas")
    return categories


def class_folders(source: Path | str) -> dict[str, list[Path]]:
    """The image files of each class sub-folder of `source`, sorted by name (hidden files skipped)."""
    source = Path(source)
    if not source.is_dir():
        raise FileNotFoundError(f"{source} is not a folder: give a folder with one sub-folder of photos per class")
    # "None of these" photos (the label store's none/) are never a class.
    classes = {name: files for name, files in photos_by_class(source).items() if files and name != NONE_LABEL}
    if not classes:
        raise FileNotFoundError(f"{source} has no sub-folders with images in them (expected e.g. {source}/black/1.jpg)")
    return classes


def gather_from_folder(source: Path | str, dest: Path | str, *, classes: list[str] | None = None,
                       images_per_class: int | None = None, seed: int = 42) -> dict[str, int]:
    """Copy up to `images_per_class` photos of each class from `source` into `dest/<class>/`; counts per class.

    Files are named by content hash, as downloads are, so copying again skips what is there.
    A label store (a folder with a manifest.jsonl, or a labels zip) is gathered by `gather_labels` instead:
    every label counts (`images_per_class` does not apply) and the training data mirrors the latest labels.
    """
    if is_label_store(source):
        return gather_labels(source, dest, classes=classes).counts
    found = class_folders(source)
    missing = [c for c in classes or [] if c not in found]
    if missing:
        raise FileNotFoundError(f"{source} has no photos for {', '.join(missing)} (it has {', '.join(found)}): set "
                                f"CATEGORIES in train.ipynb's first cell to the categories to train, or run it with "
                                f"PICSORT_CATEGORIES={','.join(found)}")
    counts = {}
    for name in classes or list(found):
        files = list(found[name])
        if images_per_class is not None:
            random.Random(seed).shuffle(files)  # a fixed sample, so re-runs pick the same photos
        target = Path(dest) / name
        target.mkdir(parents=True, exist_ok=True)
        copied = set()
        for file in files:
            if images_per_class is not None and len(copied) >= images_per_class:
                break
            data = file.read_bytes()
            try:
                extension = usable_image_extension(data, file.name)
            except UnusableImageError:
                continue  # not an image: take the next photo instead
            copy = target / f"{hashlib.sha256(data).hexdigest()[:16]}.{extension}"
            if not copy.exists():
                write_atomically(copy, data)
            copied.add(copy)
        counts[name] = len(copied)
    return counts


def gather_from_search(queries: Mapping[str, str], dest: Path | str, *, images_per_class: int = 150,
                       cache_dir: Path | str | None = None, **download_options) -> dict[str, DownloadReport]:
    """Search DuckDuckGo for each class's query and download the images into `dest/<class>/`."""
    urls = search_categories(dict(queries), images_per_class,
                             cache_dir=cache_dir or folders.cache_dir() / "searches")
    return {name: download_images(urls[name], Path(dest) / name, **download_options) for name in queries}


# --- the app's labels ----------------------------------------------------------------------------------


@dataclass
class LabelledPhoto:
    """One photo from the label store, with what the model said when it was labelled (for review)."""

    path: Path
    label: str
    predicted: str | None  # the model's answer, None if the app did not record one
    confidence: float | None  # the model's probability for its answer
    sha256: str
    original_name: str | None = None
    time: str | None = None


@dataclass
class LabelsGathered:
    """What `gather_labels` did; `str()` gives a one-line summary."""

    counts: dict[str, int] = field(default_factory=dict)  # class -> labelled photos now in the training data
    none_of_these: int = 0  # photos labelled "none of these": left out of (and removed from) the data
    removed: int = 0  # copies removed from dest: an older label's copy, a "none of these" photo, an undone label
    missing: int = 0  # manifest entries whose photo is not in the store (deleted by hand)
    refused: list[str] = field(default_factory=list)  # what was not taken, and why (hostile or damaged input)

    def __str__(self) -> str:
        classes = ", ".join(f"{name}: {count}" for name, count in self.counts.items()) or "no photos"
        notes = [f"{self.none_of_these} 'none of these' left out"] if self.none_of_these else []
        notes += [f"{self.removed} old copies removed"] if self.removed else []
        notes += [f"{self.missing} photos missing from the store"] if self.missing else []
        notes += [f"{len(self.refused)} refused"] if self.refused else []
        text = classes + (f" ({'; '.join(notes)})" if notes else "")
        shown = _REFUSALS_SHOWN
        for reason in self.refused[:shown]:
            text += f"\n  refused {reason}"
        if len(self.refused) > shown:
            text += f"\n  … and {len(self.refused) - shown} more refused"
        return text


def label_store_folder(source: Path | str) -> Path:
    """The folder of a label store: `source` itself, or a labels zip unpacked once into the cache folder."""
    source = Path(source)
    if source.is_dir():
        return source
    if not zipfile.is_zipfile(source):
        raise ValueError(f"{source} is neither a label folder nor a labels zip (the app's 'Download labels')")
    digest = hashlib.sha256()
    with open(source, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    target = folders.cache_dir() / "label-zips" / digest.hexdigest()[:16]
    if (target / MANIFEST_NAME).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    unpacking = Path(tempfile.mkdtemp(dir=target.parent, prefix=".unpacking-"))
    try:
        _unpack_labels(source, unpacking)
        shutil.rmtree(target, ignore_errors=True)
        unpacking.rename(target)
    finally:
        shutil.rmtree(unpacking, ignore_errors=True)
    return target


def labels_to_review(source: Path | str, dest: Path | str, *, classes: list[str] | None = None
                     ) -> list[LabelledPhoto]:
    """Photos labelled (or relabelled) since the last `gather_labels(source, dest)`, grouped by label.

    Each comes with the model's answer and its confidence from the manifest, so a notebook can show them
    before they are added to the training data. "None of these" photos are listed too (under NONE_LABEL):
    gathering leaves them out.
    """
    folder = label_store_folder(source)
    gathered = _read_gathered(Path(dest))
    photos = []
    for entry in LabelStore(folder).entries():
        if classes is not None and entry["label"] not in (*classes, NONE_LABEL):
            continue
        if gathered.get(entry["sha256"], {}).get("label") == entry["label"]:
            continue
        probabilities = entry.get("probabilities") or {}
        predicted = entry.get("predicted")
        photos.append(LabelledPhoto(path=folder / entry["path"], label=entry["label"], predicted=predicted,
                                    confidence=probabilities.get(predicted), sha256=entry["sha256"],
                                    original_name=entry.get("original_name"), time=entry.get("time")))
    photos.sort(key=lambda photo: (*label_order(photo.label), photo.time or ""))
    return photos


def gather_labels(source: Path | str, dest: Path | str, *, classes: list[str] | None = None,
                  skip: Iterable[str] = ()) -> LabelsGathered:
    """Mirror the label store `source` (folder or labels zip) into the training data `dest/<class>/`.

    A photo's latest label is its only copy in `dest`: relabelled in the app, it leaves its old class folder
    (whichever way it first got there); labelled "none of these", it leaves the data altogether; a label
    undone in the app takes back the copy an earlier gather made. `classes` limits the classes gathered;
    `skip` holds SHA-256s of photos to leave out this time (say, rejected on review: they stay pending).
    """
    folder, dest = label_store_folder(source), Path(dest)
    skip = {digest.lower() for digest in skip}
    gathered = _read_gathered(dest)
    store = LabelStore(folder)
    report = LabelsGathered(refused=_read_refused(folder) + store.refused_lines())
    current = set()
    copies_of = _copies_by_name(dest)  # listed once: each photo (digest) comes once, and only its files change
    for entry in store.entries():
        digest, label = entry["sha256"], entry["label"]
        if digest in skip or (classes is not None and label not in (*classes, NONE_LABEL)):
            current.add(digest)  # not gathered now, and not taken back either
            continue
        file = folder / entry["path"]
        if not file.is_file():
            report.missing += 1
            continue
        current.add(digest)
        copies = copies_of.get(digest[:16], [])
        if label == NONE_LABEL:
            for copy in copies:
                copy.unlink()
                report.removed += 1
            gathered[digest] = {"label": label}
            report.none_of_these += 1
            continue
        target = dest / label / f"{digest[:16]}{file.suffix}"
        for copy in copies:
            if copy != target:
                copy.unlink()
                report.removed += 1
        earlier = gathered.get(digest, {})
        if target.exists():
            created = earlier.get("created", False) and earlier.get("file") == f"{label}/{target.name}"
        else:
            content = file.read_bytes()
            problem = _photo_problem(content, file.name)
            if problem is not None:
                report.refused.append(f"{entry['path']}: {problem}")
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(target, content)
            created = True
        gathered[digest] = {"label": label, "file": f"{label}/{target.name}", "created": created}
        report.counts[label] = report.counts.get(label, 0) + 1
    for digest in [d for d in gathered if d not in current]:
        # Undone in the app since the last gather: take back only a copy this function made.
        earlier = gathered.pop(digest)
        if earlier.get("created") and (dest / earlier["file"]).is_file():
            (dest / earlier["file"]).unlink()
            report.removed += 1
    dest.mkdir(parents=True, exist_ok=True)
    write_atomically(dest / GATHERED_NAME, json.dumps(gathered, indent=1).encode("utf-8"))
    report.counts = dict(sorted(report.counts.items()))
    return report


def is_label_store(source: Path | str) -> bool:
    """Whether `source` is the app's label store: its folder (with a manifest), or a labels zip."""
    source = Path(source)
    return (source / MANIFEST_NAME).is_file() if source.is_dir() else zipfile.is_zipfile(source)


def _copies_by_name(dest: Path) -> dict[str, list[Path]]:
    """The photos in dest's class folders by name before the first dot: a photo's copies are named by the first
    16 hex digits of its SHA-256."""
    copies: dict[str, list[Path]] = {}
    for files in photos_by_class(dest).values():
        for file in files:
            copies.setdefault(file.name.partition(".")[0], []).append(file)
    return copies


def _read_refused(folder: Path) -> list[str]:
    try:
        refused = json.loads((folder / REFUSED_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [str(reason) for reason in refused] if isinstance(refused, list) else []


def _read_gathered(dest: Path) -> dict[str, dict]:
    try:
        data = json.loads((dest / GATHERED_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _unpack_labels(source: Path, folder: Path) -> None:
    """Unpack a labels zip's manifest and its `<label>/<sha256>.<ext>` photos into `folder`, nothing else.

    A zip is data from outside: a member is written only under a name `stored_name_problem` accepts, only if
    it is no link, its bytes hash to its name and decode as an image; everything else is refused and listed
    in `folder/REFUSED_NAME` for the gather summary. Sizes are counted as the bytes come out, not as the
    headers claim, so a zip bomb stops at the limits.
    """
    refused: list[str] = []
    unpacked = 0
    with zipfile.ZipFile(source) as archive:
        members = archive.infolist()
        if len(members) > _MAX_ZIP_MEMBERS:
            raise ValueError(f"{source} holds {len(members):,} entries: more than a labels zip can "
                             f"({_MAX_ZIP_MEMBERS:,})")
        for member in members:
            if member.is_dir():
                continue
            name = member.filename
            label, _, file_name = name.partition("/")
            if name == MANIFEST_NAME:
                limit, problem = _MAX_MANIFEST_BYTES, None
            else:
                limit, problem = MAX_UPLOAD_BYTES, stored_name_problem(label, file_name) if label else "not in a label folder"
            if problem is None and stat.S_ISLNK(member.external_attr >> 16):
                problem = "it is a link"
            if problem is None and member.file_size > limit:
                problem = "larger than a labelled photo can be"
            if problem is not None:
                refused.append(f"{name}: {problem}")
                continue
            with archive.open(member) as data:
                content = data.read(limit + 1)  # the header's size can lie: never read more than the limit
            unpacked += len(content)
            if unpacked > _MAX_ZIP_BYTES:
                raise ValueError(f"{source} unpacks to more than {human_bytes(_MAX_ZIP_BYTES)}: "
                                 "not a labels zip from the app")
            if len(content) > limit:
                refused.append(f"{name}: larger than a labelled photo can be")
                continue
            if name != MANIFEST_NAME:
                problem = _photo_problem(content, file_name)
                if problem is not None:
                    refused.append(f"{name}: {problem}")
                    continue
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            write_atomically(folder / name, content)
    if not (folder / MANIFEST_NAME).is_file():
        raise ValueError(f"{source} has no {MANIFEST_NAME}: it is not a labels zip from the app")
    write_atomically(folder / REFUSED_NAME, json.dumps(refused, indent=1).encode("utf-8"))


def _photo_problem(content: bytes, name: str) -> str | None:
    """Why bytes stored as `name` (`<sha256>.<ext>`) are not that photo (None: they are)."""
    if hashlib.sha256(content).hexdigest() != name.partition(".")[0]:
        return "its bytes do not hash to its name"
    try:
        usable_image_extension(content, name)
    except UnusableImageError as exc:
        return f"not a usable image ({exc})"
    return None
