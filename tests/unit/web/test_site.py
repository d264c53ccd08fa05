"""picsort.web.site and `picsort export-web`: what the folder holds, what it refuses, and resize.js against Pillow."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from picsort.batch.columns import results_header
from picsort.cli import main
from picsort.web.site import MAX_SITE_BYTES, STATIC_FILES, VENDOR_FILES, SiteError, write_site, zipped_site

REPO = Path(__file__).resolve().parents[3]
STATIC = REPO / "src" / "picsort" / "web" / "static"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site") / "bears"
    write_site(out)
    return out


def test_the_site_holds_the_page_the_model_and_onnx_runtime(site):
    for name in (*STATIC_FILES, "model.onnx", "model.json", "site.json"):
        assert (site / name).is_file(), name
    for name in VENDOR_FILES:
        assert (site / "vendor" / name).is_file(), name
    size = sum(path.stat().st_size for path in site.rglob("*") if path.is_file())
    assert size <= MAX_SITE_BYTES, f"{size / 1e6:.1f} MB"
    assert "MIT License" in (site / "vendor" / "LICENSE").read_text()


def test_site_json_has_the_cards_classes_thresholds_and_the_csv_columns(site):
    settings = json.loads((site / "site.json").read_text())
    card = json.loads((REPO / "model" / "model.json").read_text())
    assert settings["classes"] == card["classes"]
    assert (settings["size"], settings["extra"]) == (card["preprocessing"]["size"], card["preprocessing"]["extra"])
    assert settings["threshold"] == card["threshold"]
    assert settings["none_of_these"] == {"similarity_threshold": card["none_of_these"]["threshold"],
                                         "resemblance_threshold": card["none_of_these"]["imagenet"]["threshold"]}
    assert settings["results_header"] == results_header(card["classes"])
    assert settings["model_id"] == hashlib.sha256((site / "model.onnx").read_bytes()).hexdigest()[:16]


def test_the_page_asks_only_its_own_site(site):
    page = (site / "index.html").read_text()
    assert "default-src 'self'" in page  # the browser refuses any other origin
    for name in (*STATIC_FILES, "vendor/ort.wasm.min.js"):
        text = (site / name).read_text(errors="replace") if not name.endswith(".svg") else ""
        assert "http://" not in text.replace("http://www.w3.org", "") or name.startswith("vendor"), name
        assert "https://" not in text or name.startswith("vendor"), name


def test_the_vendored_files_are_the_pinned_ones():
    sums = dict(reversed(line.split()) for line in (STATIC / "vendor" / "SHA256SUMS").read_text().splitlines())
    assert set(sums) == {"ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"}
    for name, digest in sums.items():
        assert hashlib.sha256((STATIC / "vendor" / name).read_bytes()).hexdigest() == digest, name


def test_a_folder_of_other_files_is_refused_and_a_site_is_replaced(tmp_path, site):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SiteError, match="already holds other files"):
        write_site(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    again = tmp_path / "again"
    shutil.copytree(site, again)
    (again / "model.onnx").write_bytes(b"old")
    write_site(again)
    assert (again / "model.onnx").read_bytes() == (site / "model.onnx").read_bytes()


def test_export_web_command(tmp_path, capsys):
    assert main(["export-web", "--out", str(tmp_path / "page")]) == 0
    out = capsys.readouterr().out
    assert "http.server" in out and (tmp_path / "page" / "index.html").is_file()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "a.txt").write_text("x")
    assert main(["export-web", "--out", str(tmp_path / "busy")]) == 2
    assert "already holds other files" in capsys.readouterr().err
    assert main(["export-web", "--out", str(tmp_path / "x"), "--model", str(tmp_path / "busy")]) == 2


def test_the_package_data_takes_every_static_file():
    text = (REPO / "pyproject.toml").read_text()
    assert '"picsort.web"' in text and "static/vendor/*" in text
    suffixes = {path.suffix for path in STATIC.iterdir() if path.is_file()}
    assert suffixes <= {".html", ".js", ".css", ".svg"}


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run resize.js outside a browser "
                    "(tests/end_to_end/test_web_page.py runs it in Chromium)")
@pytest.mark.parametrize("width, height", [(640, 480), (4032, 3024), (123, 77), (300, 300), (1999, 640)])
def test_resize_js_is_pillows_bilinear_resize_and_crop(tmp_path, width, height):
    pixels = np.random.default_rng(width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    rgba = np.dstack([pixels, np.full((height, width), 255, np.uint8)])
    (tmp_path / "in").write_bytes(rgba.tobytes())
    script = (f"import {{ modelView }} from {json.dumps((STATIC / 'resize.js').as_uri())};\n"
              "import fs from 'fs';\n"
              f"const out = modelView(fs.readFileSync({json.dumps(str(tmp_path / 'in'))}), {width}, {height}, 260, 40);\n"
              f"fs.writeFileSync({json.dumps(str(tmp_path / 'out'))}, out);\n")
    (tmp_path / "run.mjs").write_text(script)
    subprocess.run(["node", str(tmp_path / "run.mjs")], check=True, timeout=120)
    ours = np.frombuffer((tmp_path / "out").read_bytes(), np.uint8).reshape(260, 260, 3)
    pillow = np.asarray(Image.fromarray(pixels).resize((300, 300), Image.BILINEAR).crop((20, 20, 280, 280)))
    assert np.array_equal(ours, pillow)


@pytest.mark.slow  # a second export and a 30 MB zip: ~10 s
def test_zipped_site_is_one_folder_holding_the_site(tmp_path):
    import io
    import zipfile

    name, data = zipped_site(REPO / "model", "bears-page")
    assert name == "bears-page.zip"
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert {name.split("/")[0] for name in names} == {"bears-page"}
    assert {"bears-page/index.html", "bears-page/model.onnx", "bears-page/site.json",
            "bears-page/vendor/ort-wasm-simd-threaded.wasm"} <= set(names)


@pytest.mark.slow  # Teach's features and Train, then an export: 20-60 s
def test_teach_mode_downloads_the_taught_model_as_a_web_page(tmp_path, photos):
    from picsort.app.download_widget import NothingToDownload
    from picsort.app.teach_panel import TeachPanel
    from picsort.app.teach_session import TeachSession

    panel = TeachPanel(TeachSession(), model_classes=["black", "grizzly", "teddy"], on_trained=lambda trained: None)
    assert panel.web_download.description == "Download web page (zip)"
    with pytest.raises(NothingToDownload, match="Train a model first"):
        panel.web_zip()
    folder, _ = photos
    for name in sorted(path.name for path in folder.iterdir() if path.is_dir())[:2]:
        panel.session.add_class(name)
        for photo in sorted((folder / name).glob("*.jpg"))[:5]:
            panel.session.add_photo(name, photo.read_bytes(), photo.name)
    panel.train()
    assert panel.trained is not None, panel.status.value
    name, data, note = panel.web_zip()
    import io
    import zipfile

    archive = zipfile.ZipFile(io.BytesIO(data))
    folder_name = name.removesuffix(".zip")
    settings = json.loads(archive.read(f"{folder_name}/site.json"))
    assert settings["classes"] == panel.session.classes and "http.server" in note
