"""experiments.search_study --quick: the study's machinery end to end in about a minute (one
planted market, NSGA-II, random search and today's bot, one seed, real training)."""

from __future__ import annotations

import json

import pytest

from experiments.search_study import main, summarize

pytestmark = pytest.mark.slow


def test_quick_study_writes_runs_and_a_summary(tmp_path):
    assert main(["--quick", "--workers", "2", "--out", str(tmp_path)]) == 0
    runs = [json.loads(line) for line in (tmp_path / "search_study_quick.jsonl").read_text().splitlines()]
    assert {(r["market"], r["arm"]) for r in runs} == {("pattern", "nsga2"), ("pattern", "random"), ("pattern", "bot")}
    assert all("error" not in r for r in runs), [r.get("error") for r in runs]
    for r in runs:
        assert r["evaluated"] >= 1 and r["hv_rescored"] >= 0.0 and r["hv_search"] >= 0.0
        assert r["kind"] == "pattern" and 0 < r["market_info"]["signal_share"] < 1
        for m in r["rescored"]:                 # re-scored with seeds the search never used
            assert len(m["fresh"]) == 1 and len(m["search"]) == 2
    bot = next(r for r in runs if r["arm"] == "bot")
    assert bot["evaluated"] == 1 and bot["generations"] == 1
    payload = json.loads((tmp_path / "search_study_quick.json").read_text())
    assert [row["arm"] for row in payload["rows"]] == ["nsga2", "random", "bot"]
    assert any(n.startswith("pattern: nsga2 beats random") for n in payload["notes"])


def test_summary_pairs_arms_by_seed():
    def run(arm, seed, hv, hold):
        return {"market": "both", "arm": arm, "seed": seed, "kind": "both", "evaluated": 4, "failed": 0,
                "too_few_trades": 1, "hv_rescored": hv, "hv_search": hv + 1, "max_dsr": 0.5,
                "chosen": {"holdout_sharpe": hold, "planted": arm == "nsga2", "family": True}}
    runs = [run("random", s, 1.0, -0.1) for s in range(3)] + [run("nsga2", s, 1.0 + s, 0.2) for s in range(3)]
    rows = {r["arm"]: r for r in summarize(runs)}
    assert rows["nsga2"]["beats_random"] == "2/3" and rows["nsga2"]["planted_chosen"] == "3/3"
    assert rows["random"]["holdout_positive"] == "0/3" and rows["nsga2"]["holdout_positive"] == "3/3"
    assert rows["nsga2"]["no_trade_share"] == 0.25
    assert rows["nsga2"]["beats_bot"] == ""                         # no bot runs: no comparison
    rows = {r["arm"]: r for r in summarize(runs + [run("bot", s, 1.5, 0.0) for s in range(3)])}
    assert rows["nsga2"]["beats_bot"] == "2/3 (p 0.750)" and rows["random"]["beats_bot"].startswith("0/3")


def test_variant_arms_change_only_their_budget_and_pair_with_their_own_random():
    from experiments.search_study import study_budget

    base, q, pop = study_budget(), study_budget(arm="nsga2-q"), study_budget(arm="nsga2-pop8")
    assert base.search.threshold_mode == "probability" and q.search.threshold_mode == "quantile"
    assert q.search.threshold == (0.5, 0.95) and q.search.embedding_dim == base.search.embedding_dim
    assert pop.ga.population == 8 and pop.train == base.train and study_budget(arm="nsga2-rescore").ga.rescore == 2

    def run(arm, seed, hv):
        return {"market": "pattern", "arm": arm, "seed": seed, "kind": "pattern", "evaluated": 4, "failed": 0,
                "too_few_trades": 0, "hv_rescored": hv, "hv_search": hv, "max_dsr": 0.5,
                "chosen": {"holdout_sharpe": 0.1, "planted": False, "family": False}}
    runs = [run("random", s, 2.0) for s in range(2)] + [run("random-q", s, 0.5) for s in range(2)] + \
        [run("nsga2-q", s, 1.0) for s in range(2)]
    rows = {r["arm"]: r for r in summarize(runs)}
    assert rows["nsga2-q"]["vs"] == "random-q" and rows["nsga2-q"]["beats_random"] == "2/2"


def test_the_rescore_arm_picks_its_member_on_the_fresh_seeds(tmp_path):
    from experiments.search_study import DEFAULT_DATA_DIR, Job, run_job

    row = run_job(Job("pattern", "nsga2-rescore", 0, 6.0, 700, quick=True, rescore_members=1, rescore_seeds=1,
                      data_dir=str(DEFAULT_DATA_DIR)))
    fresh = row["search_rescored"]
    assert row["front"] and set(fresh) == {m["id"] for m in row["front"]}   # every front member re-scored
    assert fresh[row["chosen"]["id"]] == max(fresh.values())


def test_attainment_surfaces_count_every_run_of_an_arm():
    from experiments.search_study import attainment

    def run(seed, points):
        return {"market": "pattern", "arm": "nsga2", "seed": seed,
                "rescored": [{"mean": [s, d]} for s, d in points]}
    two = [run(0, [(1.0, 0.2)]), run(1, [(0.5, 0.1)])]
    assert attainment(two)["pattern"]["nsga2"] == [[1.0, 0.2], [0.5, 0.1]]   # reached by 1 of 2
    assert attainment(two, level=1.0)["pattern"]["nsga2"] == [[0.5, 0.2]]     # by both
    three = two + [run(2, [])]                                                # an empty front attains nothing
    assert attainment(three)["pattern"]["nsga2"] == [[0.5, 0.2]]              # 2 of 3 needed
    assert "pattern" not in attainment(three, level=1.0)
