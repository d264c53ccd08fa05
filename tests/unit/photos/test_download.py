"""Tests for picsort.photos.download against a real HTTP server on 127.0.0.1 (no mocked requests)."""

import functools
import hashlib
import io
import json
import random
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

import picsort.photos.download as download_module
from picsort.photos.download import FAILURE_REASONS, RECORD_NAME, DownloadReport, download_images

TIMEOUT = 0.5  # what the tests pass; the slow routes take several times longer
MAX_BYTES = 30_000


@functools.cache
def make_image(fmt, seed, size=(64, 48)):
    """A small image whose bytes differ per seed (random noise, so JPEG can't squeeze it to nothing)."""
    rng = random.Random(seed)
    im = Image.new("RGB", size)
    im.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(size[0] * size[1])])
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


@functools.cache
def many_pixels_png():
    """A 56-megapixel PNG in a few kB: small enough to download, too many pixels to keep."""
    buf = io.BytesIO()
    Image.new("1", (8000, 7000)).save(buf, "PNG")
    assert len(buf.getvalue()) < MAX_BYTES
    return buf.getvalue()


def hash_name(data, ext):
    return f"{hashlib.sha256(data).hexdigest()[:16]}.{ext}"


class ImageServer:
    """What the fixture yields: URLs by route name, the image bytes, and a per-path request counter."""

    def __init__(self, port, images):
        self.base = f"http://127.0.0.1:{port}"
        self.images = images
        self.requests = Counter()
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def url(self, path):
        return self.base + path

    def count(self, path):
        with self.lock:
            return self.requests[path]


@pytest.fixture
def server():
    images = {
        "a.jpg": make_image("JPEG", 1),
        "b.jpg": make_image("JPEG", 2),
        "c.png": make_image("PNG", 3),
        "d.png": make_image("PNG", 4),
        "e.jpg": make_image("JPEG", 5),
        "big.jpg": make_image("JPEG", 6, size=(256, 256)),
    }
    assert len(set(images.values())) == len(images)
    assert len(images["big.jpg"]) > MAX_BYTES and all(len(images[k]) < MAX_BYTES for k in images if k != "big.jpg")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

        def send_body(self, body, content_type="image/jpeg", length=True):
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            if length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            path = self.path.split("?")[0]
            with state.lock:
                state.requests[path] += 1
            try:
                self.route(path)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up on a slow route, as it should

        def route(self, path):
            if path in ("/a.jpg", "/b.jpg", "/c.png", "/d.png"):
                self.send_body(images[path[1:]], "application/octet-stream")
            elif path in ("/a-again", "/b-again"):  # same bytes as /a.jpg or /b.jpg under another URL
                self.send_body(images[path[1] + ".jpg"])
            elif path == "/png-named.jpg":  # extension and Content-Type both lie; the bytes are a PNG
                self.send_body(images["d.png"], "image/jpeg")
            elif path == "/chunked":  # HTTP/1.1 chunked body, no Content-Length
                self.protocol_version = "HTTP/1.1"
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Connection", "close")
                self.end_headers()
                data = images["e.jpg"]
                for i in range(0, len(data), 1000):
                    piece = data[i : i + 1000]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
            elif path == "/missing.jpg":
                self.send_error(404)
            elif path == "/slow.jpg":  # nothing at all for 2 s
                state.stop.wait(2.0)
                self.send_body(images["b.jpg"])
            elif path == "/trickle.jpg":  # each piece arrives in time, the whole takes 3 s
                data = images["c.png"]
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                step = len(data) // 30 + 1
                for i in range(0, len(data), step):
                    self.wfile.write(data[i : i + step])
                    self.wfile.flush()
                    if state.stop.wait(0.1):
                        return
            elif path == "/page.jpg":
                self.send_body(b"<!doctype html><html><body><h1>Not Found</h1></body></html>", "image/jpeg")
            elif path == "/truncated.jpg":
                data = images["b.jpg"]
                self.send_body(data[: len(data) // 2])
            elif path == "/big.jpg":  # says how big it is up front
                self.send_body(images["big.jpg"])
            elif path == "/big-unannounced.jpg":  # no Content-Length: only counting bytes catches it
                self.send_body(images["big.jpg"], length=False)
            elif path == "/many-pixels.png":
                self.send_body(many_pixels_png(), "image/png")
            else:
                self.send_error(404)

    class Server(ThreadingHTTPServer):
        request_queue_size = 64  # the default 5 drops connects from 16 workers: a 1 s TCP retry each

    httpd = Server(("127.0.0.1", 0), Handler)
    state = ImageServer(httpd.server_address[1], images)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    state.stop.set()  # wake the slow handlers so nothing lingers
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/nothing-listens-here.jpg"


GOOD = ["/a.jpg", "/b.jpg", "/c.png", "/png-named.jpg", "/chunked"]
BAD = {
    "/missing.jpg": "http error",
    "/slow.jpg": "timeout",
    "/trickle.jpg": "timeout",
    "/page.jpg": "not an image",
    "/truncated.jpg": "not an image",
    "/big.jpg": "too large",
    "/big-unannounced.jpg": "too large",
}


def all_urls(server):
    return [server.url(p) for p in GOOD] + [server.url("/a-again")] + [server.url(p) for p in BAD] + [closed_port_url()]


def stored_files(dest):
    return sorted(p.name for p in dest.iterdir() if p.name != RECORD_NAME)


def test_download_sort_out_and_resume(server, tmp_path):
    dest = tmp_path / "bears"
    urls = all_urls(server)
    start = time.monotonic()
    report = download_images(urls, dest, timeout=TIMEOUT, max_bytes=MAX_BYTES, max_workers=16, progress=False)
    elapsed = time.monotonic() - start

    # The trickling route takes 3 s and the slow one 2 s: the per-URL deadline cut them short.
    assert elapsed < 2.0

    assert report.downloaded == 5
    assert report.duplicate == 1  # /a-again has the bytes of /a.jpg
    assert report.skipped == 0
    assert report.failed == {"timeout": 2, "http error": 1, "not an image": 2, "too large": 2, "connection error": 1}
    assert set(report.failed) <= set(FAILURE_REASONS)
    assert dict(report.failures) == {server.url(p): reason for p, reason in BAD.items()} | {
        urls[-1]: "connection error"
    }
    assert str(report) == (
        "5 downloaded, 1 duplicate, 0 already there, 8 failed "
        "(2 timeout, 2 not an image, 2 too large, 1 http error, 1 connection error)"
    )

    # Named by content hash, extension from the bytes (the PNG behind /png-named.jpg is a .png).
    images = server.images
    expected = {
        hash_name(images["a.jpg"], "jpg"),
        hash_name(images["b.jpg"], "jpg"),
        hash_name(images["c.png"], "png"),
        hash_name(images["d.png"], "png"),
        hash_name(images["e.jpg"], "jpg"),
    }
    assert set(stored_files(dest)) == expected  # no file for bad URLs, the duplicate once, no temp files
    assert sorted(p.name for p in report.files) == sorted(expected)
    for path in [*report.files, dest / RECORD_NAME]:  # readable by the notebook's other users, as labels are
        assert path.stat().st_mode & 0o777 == 0o644, path
    for path in report.files:
        assert path.parent == dest
        with Image.open(path) as im:
            im.load()
            assert im.format == {"jpg": "JPEG", "png": "PNG"}[path.suffix[1:]]

    record = json.loads((dest / RECORD_NAME).read_text())
    assert record[server.url("/a.jpg")] == record[server.url("/a-again")] == hash_name(images["a.jpg"], "jpg")
    assert record[server.url("/png-named.jpg")] == hash_name(images["d.png"], "png")
    assert record[server.url("/page.jpg")] == "not an image"

    # Re-run: what is already there is not requested again, failures are tried again.
    before = Counter(server.requests)
    again = download_images(urls, dest, timeout=TIMEOUT, max_bytes=MAX_BYTES, max_workers=16, progress=False)
    assert again.skipped == 6  # the 5 images and the duplicate URL
    assert again.downloaded == 0 and again.duplicate == 0
    assert again.failed == report.failed
    for path in GOOD + ["/a-again"]:
        assert server.count(path) == before[path], path
    for path in BAD:
        assert server.count(path) == before[path] + 1, path
    assert str(again).startswith("0 downloaded, 0 duplicate, 6 already there, 8 failed (")
    assert sorted(p.name for p in again.files) == sorted(expected)
    assert set(stored_files(dest)) == expected


def test_a_picture_over_the_pixel_limit_is_too_large_however_few_its_bytes(server, tmp_path):
    report = download_images([server.url("/many-pixels.png")], tmp_path / "bears", timeout=5, max_bytes=MAX_BYTES,
                             progress=False)
    assert report.failed == {"too large": 1} and stored_files(tmp_path / "bears") == []


def test_image_already_in_dest_counts_as_duplicate(server, tmp_path):
    download_images([server.url("/b.jpg")], tmp_path, timeout=TIMEOUT, progress=False)
    name = hash_name(server.images["b.jpg"], "jpg")
    mtime = (tmp_path / name).stat().st_mtime_ns

    report = download_images([server.url("/b-again")], tmp_path, timeout=TIMEOUT, progress=False)
    assert (report.downloaded, report.duplicate, report.skipped) == (0, 1, 0)
    assert stored_files(tmp_path) == [name]
    assert (tmp_path / name).stat().st_mtime_ns == mtime  # not written again
    assert report.files == [tmp_path / name]


def test_same_url_twice_is_fetched_once(server, tmp_path):
    url = server.url("/c.png")
    report = download_images([url, url], tmp_path, progress=False)
    assert (report.downloaded, report.duplicate) == (1, 1)
    assert server.count("/c.png") == 1


def test_deleted_file_is_not_downloaded_again(server, tmp_path):
    """Deleting a bad image while cleaning the data set must stick on a re-run."""
    report = download_images([server.url("/a.jpg")], tmp_path, progress=False)
    report.files[0].unlink()
    again = download_images([server.url("/a.jpg")], tmp_path, progress=False)
    assert again.skipped == 1 and again.files == []
    assert server.count("/a.jpg") == 1


def test_record_saved_along_the_way(server, tmp_path, monkeypatch):
    saves = []
    real_save = download_module._save_record
    monkeypatch.setattr(download_module, "_save_record", lambda path, m: (saves.append(len(m)), real_save(path, m)))
    urls = [server.url(f"/d.png?copy={i}") for i in range(60)]
    report = download_images(urls, tmp_path, progress=False)
    assert (report.downloaded, report.duplicate) == (1, 59)
    assert saves == [50, 60]  # after 50 URLs, and at the end
    assert len(json.loads((tmp_path / RECORD_NAME).read_text())) == 60


def test_progress_bar_counts_the_urls_and_can_be_turned_off(server, tmp_path, capsys):
    urls = [server.url("/a.jpg"), server.url("/missing.jpg")]
    report = download_images(urls, tmp_path / "shown", progress=True)
    assert str(report) == "1 downloaded, 0 duplicate, 0 already there, 1 failed (1 http error)"
    assert "2/2" in capsys.readouterr().out  # fastprogress's bar, finished: 2 of 2 URLs
    download_images(urls, tmp_path / "quiet", progress=False)
    assert capsys.readouterr().out == ""


def test_no_urls_gives_an_empty_report_and_no_bar(tmp_path, capsys):
    empty = download_images([], tmp_path / "empty", progress=True)
    assert str(empty) == "0 downloaded, 0 duplicate, 0 already there, 0 failed"
    assert empty == DownloadReport()
    assert capsys.readouterr().out == ""
