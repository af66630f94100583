"""Snapshot tests: every screen at 80x24 and 160x48, from frozen data."""

from __future__ import annotations

import pytest

from tests.tui.scenes import SCENES, build_ledger, make_app

SIZES = [(80, 24), (160, 48)]


async def _settle(pilot) -> None:
    app = pilot.app
    await pilot.pause()
    await app.workers.wait_for_complete()
    for widget in app.screen.query("Input, TextArea"):
        widget.cursor_blink = False
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
@pytest.mark.parametrize("scene", SCENES, ids=[s.name for s in SCENES])
def test_screen(snap_compare, tmp_path, scene, size) -> None:
    home = tmp_path / "home"
    build_ledger(home, empty=scene.empty)
    assert snap_compare(make_app(home), press=scene.press, terminal_size=size,
                        run_before=_settle)


@pytest.mark.parametrize("scene", SCENES, ids=[s.name for s in SCENES])
async def test_scene_opens_without_errors(tmp_path, scene) -> None:
    # A crashed app snapshots as a blank screen; this proves each scene really renders.
    home = tmp_path / "home"
    build_ledger(home, empty=scene.empty)
    app = make_app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press(*scene.press)
        await pilot.pause()
        assert type(app.screen).__name__ == scene.screen
        assert app.screen.query("*")
    assert app.return_code in (None, 0)
