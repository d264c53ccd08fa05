"""The layout every set of photos in picsort has: a folder with one sub-folder of photos per class
(`root/<class>/<photo>`). A user's own photos, downloads, gathered labels and the label store all use it, so
which folders are classes and which files are photos is decided here, once.

Torch-free and importing only picsort.photos.images: the label store uses it, and picsort.photos.sources imports the store.
"""

from __future__ import annotations

from pathlib import Path

from picsort.photos.images import is_image_file

__all__ = ["class_folders_in", "photos_by_class", "photos_in"]


def class_folders_in(root: Path | str, *, links: bool = True) -> list[Path]:
    """The sub-folders of `root` (its classes), sorted by name; [] if `root` is not a folder.

    Hidden folders (.ipynb_checkpoints, a label store's own) are no class. `links=False` leaves out linked
    folders too: where picsort keeps its own photos (the label store), a link could lead anywhere.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    return [folder for folder in sorted(root.iterdir())
            if not folder.name.startswith(".") and folder.is_dir() and (links or not folder.is_symlink())]


def photos_in(folder: Path | str) -> list[Path]:
    """The photo files in `folder` (not its sub-folders), sorted by name; [] if `folder` is not a folder.

    A photo is a regular file `is_image_file` takes (an image suffix, not hidden: in-flight temporary files are
    hidden). Nothing is read: whether it decodes is up to whoever opens it.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(file for file in folder.iterdir() if is_image_file(file) and file.is_file())


def photos_by_class(root: Path | str) -> dict[str, list[Path]]:
    """`photos_in` each of `class_folders_in(root)`, by folder name (empty folders too)."""
    return {folder.name: photos_in(folder) for folder in class_folders_in(root)}
