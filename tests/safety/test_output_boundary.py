"""Nothing a server or an input file sends reaches the terminal raw: escape sequences in a
reason phrase, an ETag, a file name or an input-file value are shown escaped by the CLI."""

from __future__ import annotations

import subprocess
from pathlib import Path

from dltui.origin import Resource
from dltui.shown import Boundary, shown
from tests.engine.helpers import blob
from tests.support.cli import dltui

#: OSC 52 puts `rm -rf ~/*` on the clipboard under tmux; OSC 0 retitles; CSI 2J clears; C1 CSI.
HOSTILE = "\x1b]52;c;cm0gLXJmIH4vKgo=\x07\x1b]0;pwned\x07\x1b[2J\x9b31m\u202e"
RAW = ("\x1b", "\x07", "\x9b", "\u202e")
#: The same as a server sends it: its UTF-8 bytes in a header (HTTP reads them as Latin-1).
WIRE = HOSTILE.encode().decode("latin-1")


def _dltui(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return dltui(home, *args, env={"DLTUI_RETRIES": "1"}, timeout=60)


def _inert(proc: subprocess.CompletedProcess[str]) -> str:
    text = proc.stdout + proc.stderr
    for raw in RAW:
        assert raw not in text, (raw, text)
    assert "Traceback" not in text
    return text


def test_shown_escapes_every_control_and_keeps_the_rest() -> None:
    assert shown("ok\x1b[2Jdone\x07\n\t\x9b\u202e") == "ok\\x1b[2Jdone\\x07\\x0a\\x09\\x9b\\u202e"
    assert shown("naïve [/] café €") == "naïve [/] café €"  # text and markup stay as they are
    written: list[str] = []

    class Sink:
        def write(self, text: str) -> int:
            written.append(text)
            return len(text)

    Boundary(Sink()).write(f"line one {HOSTILE}\nline two\n")  # type: ignore[arg-type]
    assert written == [f"line one {shown(HOSTILE)}\nline two\n"]


def test_a_hostile_server_never_reaches_the_terminal(tmp_path, origin) -> None:
    home, dest = tmp_path / "home", tmp_path / "dl"
    deny = origin.add("/deny", Resource(status=403, reason="Forbidden" + WIRE))
    named = origin.add("/named", Resource(
        data=blob(5000), etag=False, headers={"ETag": f'"[/]{WIRE}"'},
        content_disposition=f'attachment; filename="red{WIRE}.bin"'))
    got = _dltui(home, "get", deny, named, "-d", str(dest))
    assert got.returncode == 1
    text = _inert(got)
    assert "HTTP 403 Forbidden\\x1b]52;c;" in text  # shown, escaped, not dropped
    for args in (["status"], ["status", "--json"], ["status", "--state", "failed"],
                 ["reconcile", "--dry-run"], ["check"], ["store"]):
        _inert(_dltui(home, *args))
    listing = tmp_path / "urls.txt"
    listing.write_text(f"{named}?again\n  dir={tmp_path}/x{HOSTILE}\n  out=n{HOSTILE}.bin\n")
    _inert(_dltui(home, "add", "-i", str(listing)))
    _inert(_dltui(home, "add", f"{named}?{HOSTILE}", "-d", str(dest)))


def test_every_control_character_is_escaped() -> None:
    """Every C0 and C1 control, DEL and each bidi control, alone and inside text: nothing
    of them is left for a terminal to act on."""
    import unicodedata

    bidi = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    for ch in [*map(chr, range(0x20)), "\x7f", *map(chr, range(0x80, 0xA0)), *bidi]:
        out = shown(f"a{ch}b")
        assert out.startswith("a\\") and out.endswith("b"), (repr(ch), out)
        assert all(unicodedata.category(c)[0] != "C" and c not in bidi for c in out), \
            (repr(ch), out)
