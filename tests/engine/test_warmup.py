"""Workers prepare what the plan's rules need while the parent still parses lists."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from scrub.apply import apply
from scrub.engine.plan import plan_for_apply
from scrub.engine.warmup import announcing_to, compile_kernel, kernels_for
from scrub.synthetic import read_column


def test_kernels_follow_entry_types() -> None:
    assert kernels_for(["md5", "sha256"]) == set()
    assert kernels_for(["domain"]) == {"hosts"}
    assert kernels_for(["url_prefix", "pdq"]) == {"hosts", "hamming"}
    for kernel in ("hosts", "hamming"):
        compile_kernel(kernel)
    with pytest.raises(ValueError):
        compile_kernel("nonsense")


def test_lists_are_announced_as_read_and_the_plan_keeps_the_given_order(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_text("".join(f"{i:032x}\n" for i in range(5000)))
    small = tmp_path / "small.csv"
    small.write_text("type,value\ndomain,example.com\nurl_prefix,https://a.example/x/\n")
    heard: list[set[str]] = []
    with announcing_to(heard.append):
        plan = plan_for_apply([big, small], [])
    # The small opt-out list is read first (its types are announced before the big list is
    # parsed), but sources keep the order given.
    assert heard[0] == {"hosts"}
    assert [s.label for s in plan.sources] == ["big.txt", "small.csv"]


@pytest.mark.slow
def test_warmed_workers_give_the_same_output(sample_dataset: Path, tmp_path: Path) -> None:
    hosts = read_column(sample_dataset, "URL").head(2000).str.extract(r"://([^/:?#]+)", 1)
    listed = tmp_path / "hosts.csv"
    chosen = sorted(set(hosts.drop_nulls().str.to_lowercase().to_list()))[:5]
    listed.write_text("type,value\n" + "".join(f"host,{h}\n" for h in chosen))
    outputs = []
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        apply(lambda: plan_for_apply([listed], []), sample_dataset, out, workers=workers,
              progress=False)
        outputs.append(pl.read_parquet(sorted(out.glob("*.parquet"))))
    assert outputs[0].height < read_column(sample_dataset, "URL").len()
    assert outputs[0].equals(outputs[1])
