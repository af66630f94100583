"""Write the README's screenshots from the snapshot tests' scenes: `make screenshots`."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from tests.tui.scenes import SCENES, build_ledger, make_app

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


async def main() -> None:
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, size in WANTED.items():
            print(await shoot(name, size, Path(tmp)), file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
