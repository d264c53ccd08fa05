"""Which folders of a class-folder set are classes, and which of their files are photos."""

from __future__ import annotations

from picsort.photos.photo_folders import class_folders_in, photos_by_class, photos_in


def test_classes_are_the_visible_sub_folders_and_photos_their_visible_image_files(tmp_path):
    for name in ["teddy", "black", ".ipynb_checkpoints"]:
        (tmp_path / name).mkdir()
    (tmp_path / "notes.jpg").write_bytes(b"a file beside the classes is no class")
    for name in ["2.JPG", "1.png", ".1.jpg.tmp", ".hidden.jpg", "notes.txt"]:
        (tmp_path / "black" / name).write_bytes(b"x")
    (tmp_path / "black" / "folder.jpg").mkdir()  # named like a photo, but not a file
    (tmp_path / ".ipynb_checkpoints" / "3.jpg").write_bytes(b"x")

    assert [folder.name for folder in class_folders_in(tmp_path)] == ["black", "teddy"]
    assert [photo.name for photo in photos_in(tmp_path / "black")] == ["1.png", "2.JPG"]
    assert {name: [photo.name for photo in photos] for name, photos in photos_by_class(tmp_path).items()} == {
        "black": ["1.png", "2.JPG"], "teddy": []}


def test_a_linked_class_folder_counts_unless_links_are_refused(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "grizzly").symlink_to(tmp_path / "elsewhere")
    assert [folder.name for folder in class_folders_in(tmp_path / "set")] == ["grizzly"]
    assert class_folders_in(tmp_path / "set", links=False) == []


def test_a_missing_folder_has_no_classes_and_no_photos(tmp_path):
    assert class_folders_in(tmp_path / "nowhere") == []
    assert photos_in(tmp_path / "nowhere") == []
    (tmp_path / "file.jpg").write_bytes(b"x")
    assert photos_in(tmp_path / "file.jpg") == []
