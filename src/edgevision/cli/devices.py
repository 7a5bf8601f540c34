"""``edgevision devices``: what each installed runtime can run on here."""

from __future__ import annotations

import json

from rich.table import Table

from edgevision import api
from edgevision.cli.console import JsonOption, stdout


def devices(json_output: JsonOption = False) -> None:
    """List the devices and delegates each installed runtime sees (for --device)."""
    found = api.devices()
    if json_output:
        print(json.dumps(found, indent=2))
        return
    table = Table("runtime", "device", "name", "notes", title="edgevision devices", title_justify="left")
    for runtime, entries in found.items():
        for entry in entries:
            table.add_row(runtime, entry["device"], entry["name"], entry["notes"])
    stdout.print(table)
    stdout.print("--device takes an OpenVINO device or a LiteRT delegate from this list; other runtimes use the CPU.")
