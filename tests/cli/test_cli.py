"""The `cjo` command as a user runs it: exit codes, text and JSON output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cjo.cli.main import cli
from tests.dsl.test_compile import BUNDLE

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml")) + sorted(
    (ROOT / "examples").glob("demo/*.yaml")
)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def bundle_file(tmp_path: Path) -> Path:
    path = tmp_path / "journey.yaml"
    path.write_text(BUNDLE, encoding="utf-8")
    return path


def test_validate_valid_file_exits_0(runner: CliRunner, bundle_file: Path) -> None:
    result = runner.invoke(cli, ["validate", str(bundle_file)])
    assert result.exit_code == 0, result.output
    assert "valid (1 Benefit, 1 Journey, 1 Template)" in result.stderr


def test_validate_invalid_file_exits_1_with_positions(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BUNDLE.replace("on: {timeout: end}", "on: {timeout: rewrad}"), "utf-8")
    result = runner.invoke(cli, ["validate", str(path)])
    assert result.exit_code == 1
    line = next(text for text in result.stdout.splitlines() if "E201" in text)
    assert line == (
        f"{path}:20:21: error E201: unknown step 'rewrad' in "
        "spec.steps[1].on.timeout (did you mean 'reward'?)"
    )


def test_validate_json_matches_the_api_shape(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BUNDLE.replace("benefit: cashback-20\n", "benefit: cashback-2\n"), "utf-8")
    result = runner.invoke(cli, ["validate", "--format", "json", str(path)])
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert payload["valid"] is False
    (diagnostic,) = payload["diagnostics"]
    assert diagnostic == {
        "severity": "error",
        "code": "E220",
        "message": "unknown Benefit 'cashback-2' in business line 'credit-card' "
        "(did you mean 'cashback-20'?)",
        "file": str(path),
        "line": 23,
        "column": 16,
        "path": "spec.steps[2].benefit",
    }


def test_unreadable_file_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["validate", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2
    assert "cannot read" in result.stderr
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    assert runner.invoke(cli, ["validate", str(binary)]).exit_code == 2


def test_usage_error_exits_2(runner: CliRunner) -> None:
    assert runner.invoke(cli, ["validate"]).exit_code == 2
    assert runner.invoke(cli, ["validate", "--format", "xml", "x.yaml"]).exit_code == 2


def test_resources_flag_acts_as_published(runner: CliRunner, tmp_path: Path) -> None:
    journey, resources = BUNDLE.split("---\n", 1)
    (tmp_path / "journey.yaml").write_text(journey, "utf-8")
    (tmp_path / "resources.yaml").write_text(resources, "utf-8")
    alone = runner.invoke(cli, ["validate", str(tmp_path / "journey.yaml")])
    assert alone.exit_code == 1
    together = runner.invoke(
        cli, ["validate", str(tmp_path / "journey.yaml"), "-r", str(tmp_path / "resources.yaml")]
    )
    assert together.exit_code == 0, together.output


def test_compile_prints_the_plan(runner: CliRunner, bundle_file: Path) -> None:
    result = runner.invoke(cli, ["compile", str(bundle_file)])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["journey"]["name"] == "card-activation"
    assert len(plan["version"]) == 16


def test_compile_of_invalid_file_exits_1(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BUNDLE.replace("type: grant", "type: grnat"), "utf-8")
    result = runner.invoke(cli, ["compile", str(path)])
    assert result.exit_code == 1
    assert "unknown step type 'grnat' (did you mean 'grant'?)" in result.stderr


def test_graph_prints_mermaid(runner: CliRunner, bundle_file: Path) -> None:
    result = runner.invoke(cli, ["graph", str(bundle_file)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("flowchart TD\n")
    assert '-->|"timeout"| done' in result.stdout


def test_schema_is_json_and_matches_the_committed_file(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["schema"])
    assert result.exit_code == 0
    committed = (ROOT / "schema" / "cjo-v1.schema.json").read_text(encoding="utf-8")
    assert result.stdout == committed, "run `make schema` to refresh schema/cjo-v1.schema.json"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_validates_compiles_and_draws(runner: CliRunner, example: Path) -> None:
    validated = runner.invoke(cli, ["validate", str(example)])
    assert validated.exit_code == 0, validated.output
    assert validated.stdout == "", "examples validate without warnings"
    drawn = runner.invoke(cli, ["graph", str(example)])
    assert drawn.exit_code == 0, drawn.output
