"""`inspectd bench`: throughput and latency of the daemon against a naive sequential loop (issue #8).

Modules: `scenarios` (TOML cases), `machine` (what it ran on; CPU/RSS from
/proc), `frames` (cached simulator dumps), `naive` (the baseline loop, its own
process), `daemon_run` (the daemon as a subprocess, a real ZMQ subscriber),
`stats` (figures, medians over repeats), `accuracy` (`inspectd eval` figures of
each case's verdicts), `report` (JSON, CSV, terminal table), `plots` (PNG),
`runner` (the whole run). bench/README.md has the current figures.
"""

from inspectd.bench.runner import SCHEMA, run_bench
from inspectd.bench.scenarios import Case, Scenario, ScenarioError, load_scenario

__all__ = ["SCHEMA", "Case", "Scenario", "ScenarioError", "load_scenario", "run_bench"]
