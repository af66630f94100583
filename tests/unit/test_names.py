import pytest

from dltui import names
from dltui.errors import InvalidName


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("/etc/shadow", "shadow"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("..", "download"),
        (".", "download"),
        ("", "download"),
        (None, "download"),
        ("a\x00b", "ab"),
        ("line\nbreak\r.txt", "linebreak.txt"),
        ("evil\u202egpj.exe", "evilgpj.exe"),
        ("c1\x85\x9bname\u2066.txt", "c1name.txt"),
        ("  spaced  ", "spaced"),
        ("...hidden", "hidden"),
        ("con.txt", "_con.txt"),
    ],
)
def test_sanitize(raw, safe) -> None:
    assert names.sanitize(raw) == safe


def test_sanitize_caps_bytes_and_keeps_extension() -> None:
    long = "\u00e9" * 300 + ".tar.gz"
    out = names.sanitize(long)
    assert len(out.encode()) <= 255
    assert out.endswith(".gz")
    out.encode().decode("utf-8")  # never cut inside a character


@pytest.mark.parametrize("bad", ["", "  ", "a/b", "..", ".", "a\\b", "x\x01y", "n" * 256])
def test_requested_name_refused(bad: str) -> None:
    with pytest.raises(InvalidName):
        names.check_requested(bad)


def test_numbered() -> None:
    assert names.numbered("file.iso", 1) == "file (1).iso"
    assert names.numbered("README", 2) == "README (2)"
    assert len(names.numbered("x" * 255, 3).encode()) <= 255
