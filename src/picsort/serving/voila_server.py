"""`picsort app`: Voila serving app.ipynb, to this machine only unless the room is invited (`--lan`).

- Local (the default): Voila listens on localhost (127.0.0.1, ::1) with no token. voila.json turns on jupyter_server's Host
  check (tornado_settings allow_remote_access false, local_hostnames), so a page reached through any other
  name is refused, websockets included: a site whose name an attacker points at 127.0.0.1 (DNS rebinding)
  gets nothing from the app.
- `--lan`: listens on every interface and requires a random token, printed in the URL to hand out, as
  Jupyter does. The token keeps out whoever was not given the URL, so the Host check is off (people type the
  machine's address).
- Voila runs as a child in a process group of its own. SIGINT, SIGTERM and SIGHUP to picsort are passed on
  to it (so a Ctrl-C in the terminal reaches it once, through picsort), and picsort waits until it has
  stopped its kernels and left the port; if picsort dies without a word (SIGKILL), Linux sends it SIGTERM.
  A shell starts a background job (`picsort app &` in a script, `nohup picsort app &`) with SIGINT ignored, and
  children inherit that: picsort handles SIGINT and SIGTERM whatever it inherited, and Voila starts with them at
  their defaults, so a SIGINT still stops the app. An ignored SIGHUP (nohup's) stays ignored.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys

from picsort.foundation.folders import APP_DIR, JUPYTER_SHARE_DIR

__all__ = ["lan_address", "serve_app", "voila_command"]

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# The largest request body Voila reads. The page sends none larger than a few bytes (photos travel over the
# kernel's websocket, capped in voila.json); tornado's default, 100 MB, let three requests at once hold 358 MB.
MAX_BODY_BYTES = 2**20


def voila_command(voila_options: list[str], *, lan: bool, port: int) -> list[str]:
    """The command line of Voila (as `launch_voila` runs it), with the options the user gave for Voila."""
    command = [sys.executable, "-m", "picsort.serving.voila_server", "app.ipynb", "--template=picsort", f"--port={port}"]
    if lan:
        tornado_settings = json.loads((APP_DIR / "voila.json").read_text())["Voila"]["tornado_settings"]
        # The whole dict, because a command-line dict replaces voila.json's rather than adding to it.
        tornado_settings = {**tornado_settings, "allow_remote_access": True}
        # --token: require the token (JUPYTER_TOKEN, from serve_app); port_retries=0: the URL printed is the
        # one served, so a busy port is an error rather than a move to another port.
        command += ["--Voila.ip=0.0.0.0", "--token", "--Voila.port_retries=0",
                    f"--Voila.tornado_settings={tornado_settings!r}"]
    # Otherwise Voila's own default address, localhost: this machine only.
    return [*command, *voila_options]


def lan_address() -> str:
    """This machine's address on its network (the interface a packet to a private address would leave by),
    else its host name. No packet is sent: connecting a UDP socket only picks the route."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            address = probe.getsockname()[0]
        except OSError:
            return socket.gethostname()
    return socket.gethostname() if address.startswith("127.") else address


def _forwarded_signals() -> list[int]:
    """The signals picsort passes on to Voila: FORWARDED_SIGNALS, but SIGHUP only where it is not ignored (nohup
    ignores it so the app outlives the terminal). SIGINT and SIGTERM always, even when inherited ignored."""
    return [signum for signum in FORWARDED_SIGNALS
            if signum != signal.SIGHUP or signal.getsignal(signum) != signal.SIG_IGN]


def _stop_with_parent(parent: int, forwarded: list[int]):
    """In the child, before Voila starts: a process group of its own, the `forwarded` signals at their defaults
    (Python then makes SIGINT a KeyboardInterrupt; an inherited SIG_IGN would outlast exec and swallow it), and
    SIGTERM from Linux should picsort die without passing a signal on."""

    def prepare() -> None:
        os.setpgid(0, 0)
        for signum in forwarded:
            signal.signal(signum, signal.SIG_DFL)
        if sys.platform == "linux":
            import ctypes

            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
            if os.getppid() != parent:  # picsort died before the request took effect
                os._exit(1)

    return prepare


def serve_app(voila_options: list[str], *, lan: bool, port: int) -> int:
    """Run Voila on app.ipynb until it stops; returns its exit status (130 after a Ctrl-C)."""
    search_path = [str(JUPYTER_SHARE_DIR), *filter(None, [os.environ.get("JUPYTER_PATH")])]
    environment = {**os.environ, "JUPYTER_PATH": os.pathsep.join(search_path)}
    if lan:
        token = secrets.token_hex(24)
        environment["JUPYTER_TOKEN"] = token  # not on the command line, where every user of the machine sees it
        print(f"picsort app --lan: serving everyone on this network. Give them this address (the token in it is "
              f"the key; a new one each start):\n\n    http://{lan_address()}:{port}/?token={token}\n", flush=True)
    forwarded = _forwarded_signals()
    child = subprocess.Popen(voila_command(voila_options, lan=lan, port=port), cwd=APP_DIR, env=environment,
                             preexec_fn=_stop_with_parent(os.getpid(), forwarded))
    received: list[int] = []

    def forward(signum, _frame) -> None:
        received.append(signum)
        child.send_signal(signum)  # a no-op once the child has stopped

    previous = {signum: signal.signal(signum, forward) for signum in forwarded}
    try:
        status = child.wait()  # a forwarded signal interrupts the wait, which then goes on
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        return 130 if received[0] == signal.SIGINT else 128 + received[0]
    return status


def template_static_handler():
    """Voila's handler of `/voila/templates/<template>/static/<file>`, answering 404 to a path not of that form.

    Voila's own unpacks the path without checking it, so `/voila/templates/picsort/static/` (nothing after static/)
    raised inside the handler: a 500 and a traceback in the log for any client, without a token (static files need
    none)."""
    import tornado.web
    from voila.static_file_handler import TemplateStaticFileHandler

    def check(path: str) -> None:
        template, static, file = (path.split("/", 2) + ["", ""])[:3]
        if not template or template in (".", "..") or static != "static" or not file:
            raise tornado.web.HTTPError(404)

    class CheckedTemplateStaticFileHandler(TemplateStaticFileHandler):
        def parse_url_path(self, path):
            check(path)
            return super().parse_url_path(path)

        @classmethod
        def get_absolute_path(cls, root, path):
            check(os.path.normpath(path).replace(os.path.sep, "/"))  # `picsort/static/..` normalises to `picsort`
            return super().get_absolute_path(root, path)

    return TemplateStaticFileHandler, CheckedTemplateStaticFileHandler


def launch_voila() -> None:
    """Voila's own command, reading request bodies no larger than MAX_BODY_BYTES (Voila offers no setting), its
    template files served by `template_static_handler`'s handler."""
    import functools

    from voila.app import Voila

    voila_handler, checked_handler = template_static_handler()

    class BoundedBodyVoila(Voila):
        def init_handlers(self):
            return [(pattern, checked_handler if handler is voila_handler else handler, *rest)
                    for pattern, handler, *rest in super().init_handlers()]

        def listen(self):
            self.app.listen = functools.partial(self.app.listen, max_body_size=MAX_BODY_BYTES)
            super().listen()

    BoundedBodyVoila.launch_instance()


if __name__ == "__main__":
    launch_voila()
