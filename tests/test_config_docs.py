"""README's configuration table is generated from the Settings models: keep them in step."""

from __future__ import annotations

import re
from pathlib import Path

from engine.cli_core import settings_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_config_table_matches_settings() -> None:
    text = README.read_text()
    match = re.search(r"<!-- config-table:start -->\n(.*?)\n<!-- config-table:end -->", text, re.S)
    assert match, "README.md lost its config-table markers"
    assert match.group(1).strip() == settings_table().strip(), (
        "README configuration table is stale: regenerate it with `abengine config --markdown`"
    )
