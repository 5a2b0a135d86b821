"""docs/benchmarks.md rendering: merged items keep their own dates; experiment JSONs become tables."""

from __future__ import annotations

import json

from evo.commands.bench import merge_reports
from experiments.bench.render import experiment_sections


def _report(date: str, items: dict) -> dict:
    load = {k: {"before": [0.5], "after": [0.6]} for k in items}
    return {"machine": {"date_utc": date}, "items": items, "load": load}


def test_merge_replaces_only_the_new_items_and_dates_them():
    base = _report("2026-11-25 04:25 UTC", {"overhead": {"a": 1}, "caches": {"b": 2}, "memory": {"c": 3}})
    new = _report("2026-11-25 08:10 UTC", {"caches": {"b": 20}})
    merged = merge_reports(base, new)
    assert merged["items"] == {"overhead": {"a": 1}, "caches": {"b": 20}, "memory": {"c": 3}}
    assert merged["item_dates"] == {"overhead": "2026-11-25 04:25 UTC", "caches": "2026-11-25 08:10 UTC",
                                    "memory": "2026-11-25 04:25 UTC"}
    assert base["items"]["caches"] == {"b": 2}  # the inputs are not written onto
    again = merge_reports(merged, _report("2026-11-25 09:00 UTC", {"memory": {"c": 30}}))
    assert again["item_dates"]["caches"] == "2026-11-25 08:10 UTC"
    assert again["item_dates"]["memory"] == "2026-11-25 09:00 UTC"


def test_experiment_json_becomes_a_table_and_bad_files_are_skipped(tmp_path):
    (tmp_path / "b_opt.json").write_text(json.dumps({
        "title": "Optimizers", "command": "python -m experiments.search_quality", "when": "2026-11-25",
        "rows": [{"optimizer": "nsga2", "hypervolume": 1.234567}, {"optimizer": "random", "note": "a|b"}],
        "notes": ["same evaluation budget"]}))
    (tmp_path / "a_broken.json").write_text("{not json")
    text = "\n".join(experiment_sections(tmp_path))
    assert "## Optimizers" in text and "broken" not in text
    assert "| optimizer | hypervolume | note |" in text
    assert "| nsga2 | 1.235 |  |" in text and "a\\|b" in text
    assert "- same evaluation budget" in text


def test_an_experiment_figure_is_linked_only_when_it_is_there(tmp_path):
    exp = {"title": "Study", "rows": [{"arm": "nsga2"}], "notes": [], "figure": "docs/experiments/study.png"}
    (tmp_path / "study.json").write_text(json.dumps(exp))
    assert "![Study]" not in "\n".join(experiment_sections(tmp_path))
    (tmp_path / "study.png").write_bytes(b"png")
    assert "![Study](experiments/study.png)" in "\n".join(experiment_sections(tmp_path))
