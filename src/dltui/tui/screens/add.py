"""The add modal: URLs, a directory, optionally a name and digest; same checks as `dltui add`."""

from __future__ import annotations

import re

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static, TextArea

from dltui import requests
from dltui.errors import UsageError
from dltui.requests import DownloadRequest
from dltui.shown import shown

#: Between headers typed on one line: a ``|`` before the next ``Name:``.
_NEXT_HEADER = re.compile(r"\s*\|\s*(?=[!#$%&'*+.^_`~0-9A-Za-z-]+\s*:)")


def build_specs(urls_text: str, directory: str, name: str, digest: str,
                headers: str = "") -> list[DownloadRequest]:
    """Validate the form the way `dltui add` validates its arguments; raise UsageError.
    ``headers`` is ``Name: value``, several separated by ``|``."""
    return requests.from_form(urls_text, directory, name, digest,
                              "\n".join(_NEXT_HEADER.split(headers.strip())))


class AddScreen(ModalScreen[list[DownloadRequest] | None]):
    """Collect and validate new downloads; dismisses with the specs, or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "submit", "Add")]
    AUTO_FOCUS = "#add-urls"

    def __init__(self, default_dir: str) -> None:
        super().__init__()
        self.default_dir = default_dir

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="add-dialog"):
            yield Static("Add downloads", classes="dialog-title")
            yield Label("URLs, one per line")
            yield TextArea(id="add-urls", soft_wrap=False)
            yield Label("Directory")
            yield Input(self.default_dir, id="add-dir", compact=True)
            with Horizontal(classes="add-row"):
                yield Input(placeholder="file name (one URL only)", id="add-name", compact=True)
                yield Input(placeholder="expected SHA-256 (optional)", id="add-sha",
                            compact=True)
            # Masked: header values are secrets (tokens, cookies), never shown once typed.
            yield Input(placeholder="headers (optional, hidden): Name: value | Name: value",
                        id="add-headers", password=True, compact=True)
            yield Static("", id="add-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Add  ^s", variant="primary", id="add-ok", compact=True)
                yield Button("Cancel", id="add-cancel", compact=True)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_submit(self) -> None:
        try:
            specs = build_specs(
                self.query_one("#add-urls", TextArea).text,
                self.query_one("#add-dir", Input).value,
                self.query_one("#add-name", Input).value,
                self.query_one("#add-sha", Input).value,
                self.query_one("#add-headers", Input).value,
            )
        except UsageError as exc:
            self.query_one("#add-error", Static).update(
                Text.assemble(("✗ ", "bold red"), shown(exc)))
            return
        self.dismiss(specs)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "add-ok":
            self.action_submit()
        else:
            self.dismiss(None)
