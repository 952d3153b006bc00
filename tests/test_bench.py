"""``python -m convert bench`` on one small variant: every figure issue 10 asks for, and a report that
names the stage holding back each missed target."""
from __future__ import annotations

import json

from conftest import run_main


def test_bench_writes_every_figure(tmp_path, capsys):
    from convert import bench

    code, out, err = run_main(bench.main, ["mobilenet_v1_0.25_128", "--baseline", "1", "--cache",
                                           str(tmp_path / "bench"), "--results", str(tmp_path / "results"),
                                           "--quiet"], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "results" / "bench.json").read_text())
    for key in ("variants", "wall_s", "floor_s", "pipeline_s_per_variant", "baseline_s_per_variant",
                "first_variant_s", "last_variant_s", "rss_start_mb", "rss_end_mb", "rerun_s", "v2_wall_s",
                "stages", "cpu_count", "date"):
        assert key in result, key
    assert result["variants"] == 1 and result["v2_wall_s"] is None
    assert 0 < result["floor_s"] < result["wall_s"] < result["baseline_s_per_variant"]  # one process beats three
    assert result["rerun_s"] < result["wall_s"]
    stages = result["stages"]
    for name in ("keras build", "tf reference", ".h5", "layer guide", "keras inference", "frozen cross-check"):
        assert stages[name] > 0, name
    assert abs(sum(stages.values()) - result["wall_s"]) <= 0.05 + 0.01 * result["wall_s"]  # exclusive stages add up
    assert result["targets"]["v2_wall_s"]["met"] is None  # no V2 variant in this run
    for key, target in result["targets"].items():
        if target["value"] is None:
            continue
        assert target["met"] == (target["value"] <= target["limit"]), key
        assert target["met"] or target["held_back_by"], key
    md = (tmp_path / "results" / "BENCH.md").read_text()
    assert "| pipeline / floor |" in md and "## Targets" in md and md == out.rstrip("\n") + "\n"
