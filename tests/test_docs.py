"""The README's configuration table names every setting the hub reads."""

from __future__ import annotations

from pathlib import Path

from incident_hub.settings import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_configuration_table_lists_every_setting() -> None:
    text = README.read_text()
    missing = [
        f"INCIDENT_HUB_{name.upper()}"
        for name in Settings.model_fields
        if f"`INCIDENT_HUB_{name.upper()}`" not in text
    ]
    assert missing == []
