"""Where training photos come from: DuckDuckGo image search, or a local folder with one sub-folder per class.

Either way the result is the same layout, `dest/<class>/<hash>.<ext>`, so the notebook does not care.
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path
from typing import Mapping

from picsort.download import DownloadReport, download_images
from picsort.images import IMAGE_SUFFIXES, UnusableImageError, image_format_extension
from picsort.search import search_categories


def class_folders(source: Path | str) -> dict[str, list[Path]]:
    """The image files of each class sub-folder of `source`, sorted by name (hidden files skipped)."""
    source = Path(source)
    if not source.is_dir():
        raise FileNotFoundError(f"{source} is not a folder: give a folder with one sub-folder of photos per class")
    classes = {}
    for folder in sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."))
        if files:
            classes[folder.name] = files
    if not classes:
        raise FileNotFoundError(f"{source} has no sub-folders with images in them (expected e.g. {source}/black/1.jpg)")
    return classes


def gather_from_folder(source: Path | str, dest: Path | str, *, classes: list[str] | None = None,
                       images_per_class: int | None = None, seed: int = 42) -> dict[str, int]:
    """Copy up to `images_per_class` photos of each class from `source` into `dest/<class>/`; counts per class.

    Files are named by content hash, as downloads are, so copying again skips what is there.
    """
    found = class_folders(source)
    missing = [c for c in classes or [] if c not in found]
    if missing:
        raise FileNotFoundError(f"{source} has no photos for {', '.join(missing)} (it has {', '.join(found)})")
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
                extension = image_format_extension(data, file.name)
            except UnusableImageError:
                continue  # not an image: take the next photo instead
            copy = target / f"{hashlib.sha256(data).hexdigest()[:16]}.{extension}"
            if not copy.exists():
                temporary = copy.with_name(f".{copy.name}.{os.getpid()}.tmp")
                temporary.write_bytes(data)
                os.replace(temporary, copy)
            copied.add(copy)
        counts[name] = len(copied)
    return counts


def gather_from_search(queries: Mapping[str, str], dest: Path | str, *, images_per_class: int = 150,
                       cache_dir: Path | str | None = None, **download_options) -> dict[str, DownloadReport]:
    """Search DuckDuckGo for each class's query and download the images into `dest/<class>/`."""
    from picsort.backbones import cache_dir as default_cache_dir

    urls = search_categories(dict(queries), images_per_class,
                             cache_dir=cache_dir or default_cache_dir() / "searches")
    return {name: download_images(urls[name], Path(dest) / name, **download_options) for name in queries}
