"""Write the README's screenshots from the snapshot tests' scenes: `make screenshots`."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from dltui.ledger import Ledger, jobs
from dltui.origin import Origin, Resource
from dltui.tui.app import DltuiApp
from tests.conftest import TEST_SETTINGS
from tests.tui.scenes import SCENES, SHOWN_PATH, build_ledger, make_app

OUT = Path(__file__).resolve().parents[2] / "screenshots"
WANTED = {"main": (120, 32), "detail": (120, 40), "flags": (100, 30), "help": (100, 30),
          "hosts": (130, 32), "add": (100, 30)}


async def shoot(name: str, size: tuple[int, int], workdir: Path) -> Path:
    scene = next(s for s in SCENES if s.name == name)
    home = workdir / name
    build_ledger(home, empty=scene.empty)
    app = make_app(home)
    async with app.run_test(size=size) as pilot:
        await pilot.press(*scene.press)
        await pilot.pause()
        await app.workers.wait_for_complete()
        for widget in app.screen.query("Input, TextArea"):
            widget.cursor_blink = False
        await pilot.pause()
        path = OUT / f"{name}.svg"
        app.save_screenshot(filename=path.name, path=str(OUT))
    return path


#: The live picture: real downloads from the loopback origin, throttled per connection.
LIVE = [("debian-12.7.0-amd64-netinst.iso", 96, 3 << 20), ("era5-2024.nc", 64, 2 << 20),
        ("weights-v3.safetensors", 128, 5 << 20), ("q3-report.pdf", 24, 700 << 10),
        ("linux-6.12.tar.xz", 48, 1 << 20)]


async def shoot_live(workdir: Path, size: tuple[int, int] = (120, 32)) -> Path:
    """The main screen while five downloads run: rates, ETAs, the header's total."""
    home, dest = workdir / "live", workdir / "live-dl"
    with Origin() as origin:
        urls = [origin.add(f"/files/{name}", Resource(data=bytes(mib << 20), rate=rate))
                for name, mib, rate in LIVE]
        with Ledger(home) as led:
            jobs.add(led, [jobs.JobSpec(u, dest) for u in urls])
        app = DltuiApp(home, TEST_SETTINGS, workers=len(LIVE), poll_interval=0.5,
                       display_path=SHOWN_PATH, theme="dltui-dark")
        async with app.run_test(size=size) as pilot:
            await pilot.pause(6.0)  # a few polls: rates settle, the sparkline fills a little
            path = OUT / "live.svg"
            app.save_screenshot(filename=path.name, path=str(OUT))
    return path


async def main() -> None:
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, size in WANTED.items():
            print(await shoot(name, size, Path(tmp)), file=sys.stderr)
        print(await shoot_live(Path(tmp)), file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
