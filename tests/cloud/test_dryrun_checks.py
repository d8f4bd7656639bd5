"""`studyc run --cloud --dryrun` checks offline what SkyPilot would only find at launch or at
the job's end: a bucket the cloud cannot mount (Vast), accelerators its catalog lacks, a
cloud that cannot host the jobs controller (Lambda); it prints each job's setup, prices
from SkyPilot's catalog when one is cached (spot as spot) and the controller's cost
(issue 12, items 3, 7, 8, 12)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from studyc.cli import main
from studyc.compiler.prices import CATALOG_SCHEMA, read_catalog

pytest.importorskip("sky", reason="the cloud extra (skypilot) is not installed")
REPO = Path(__file__).resolve().parents[2]

# A few rows in the columns of SkyPilot's catalogs (sky/catalog/data_fetchers).
VAST_CATALOG = """\
InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,Price,SpotPrice,Region,GpuInfo
1x-A100-16-64,A100,1,16,64,1.10,0.55,US,
2x-A100-32-128,A100,2,32,128,2.00,0.90,US,
1x-H100-24-128,H100,1,24,128,2.40,1.30,US,
cpu-4-16,,,4,16,0.12,0.05,US,
cpu-8-32,,,8,32,0.20,0.08,US,
"""


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_API_KEY", "x")
    return tmp_path / "home"


def cache_catalog(home: Path, cloud: str = "vast", text: str = VAST_CATALOG) -> Path:
    path = home / ".sky" / "catalogs" / CATALOG_SCHEMA / cloud / "vms.csv"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return path


def study(tmp_path: Path, cloud: str, arms: str = "a: {}", spot: bool = False) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(textwrap.dedent(f"""\
        study: dry
        run: {{command: python t.py, resources: {{accelerators: "A100:1", hours: 2}}}}
        metrics: {{m: {{goal: min}}}}
        arms: {{{arms}}}
        cloud: {{{cloud}, use_spot: {str(spot).lower()}}}
        """))
    return path


def dryrun(path: Path):
    return CliRunner().invoke(main, ["run", str(path), "--cloud", "--dryrun"])


def test_a_bucket_on_vast_is_a_problem_in_skypilots_words(tmp_path, home):
    result = dryrun(study(tmp_path, "infra: vast, results: s3://b/r"))
    assert result.exit_code == 1, result.output
    assert "problem: cloud.results s3://b/r cannot be mounted on Vast" in result.output
    assert "Mounting object stores is not supported on Vast." in result.output
    assert "Traceback" not in result.output


def test_accelerators_are_checked_against_the_cached_catalog(tmp_path, home):
    path = study(tmp_path, "infra: vast", arms='a: {}, big: {resources: {accelerators: "A100-80GB:1"}}')
    result = dryrun(path)
    assert "warning: accelerators (A100, A100-80GB) not checked: no SkyPilot catalog is cached for vast" in result.output
    assert result.exit_code == 0, result.output
    cache_catalog(home)
    result = dryrun(path)
    assert result.exit_code == 1, result.output
    assert "problem: A100-80GB is not in SkyPilot's vast catalog: its jobs would end FAILED_PRECHECKS" in result.output
    assert "problem: A100 " not in result.output


def test_prices_come_from_the_catalog_spot_as_spot_and_the_controller_is_counted(tmp_path, home):
    result = dryrun(study(tmp_path, "infra: vast"))
    assert "prices: studyc's built-in table of on-demand prices (no SkyPilot catalog cached for vast" in result.output
    assert "$3.80" in result.output  # 2 h of A100 at the built-in $1.90/h
    catalog = cache_catalog(home)
    result = dryrun(study(tmp_path, "infra: vast"))
    assert f"prices: SkyPilot's vast catalog ({catalog}), on-demand" in result.output
    assert "$2.00" in result.output  # 2 h at the catalog's cheapest A100, $1.00 per GPU (2x for $2.00)
    result = dryrun(study(tmp_path, "infra: vast", spot=True))
    assert "spot" in result.output and "$0.90" in result.output  # 2 h at $0.45 per GPU, spot
    # The controller: the cheapest 4-CPU, 16 GB VM ($0.12/h) for 2 h plus 10 idle minutes.
    assert "the jobs controller's VM: about $0.26 more" in result.output


def test_lambda_cannot_host_the_controller(tmp_path, home):
    result = dryrun(study(tmp_path, "infra: lambda"))
    assert "warning: Lambda cannot host SkyPilot's jobs controller" in result.output
    assert result.exit_code == 0, result.output


def test_the_setup_each_machine_runs_is_shown(tmp_path, home):
    result = dryrun(REPO / "studies" / "burgers_phase3_ablation.yaml")
    assert "setup on each machine:" in result.output
    assert "python3 -m pip install -e '.[torch,wandb]'" in result.output  # GPU runs: PyPI's CUDA wheels


def test_catalog_reader_keeps_the_cheapest_offer_per_gpu(home):
    cache_catalog(home)
    catalog = read_catalog("vast")
    assert catalog.gpu == {"A100": 1.00, "H100": 2.40}
    assert catalog.gpu_spot == {"A100": 0.45, "H100": 1.30}
    assert catalog.cpu == pytest.approx(0.025) and catalog.controller == 0.12
    assert read_catalog("aws") is None


def test_s3_compatible_results_use_skypilots_scheme_job_side_and_here(tmp_path, home):
    # Job side: SkyPilot mounts r2:// itself (AWS_ENDPOINT_URL would reach this machine only).
    import sky
    import yaml

    from studyc.compiler.plan import compile_plan
    from studyc.compiler.sky import write_compiled
    from studyc.runtime.results import Results
    from studyc.spec.loader import load

    loaded = load(study(tmp_path, "infra: aws, results: r2://bkt/runs"))
    (task_file,) = write_compiled(loaded, compile_plan(loaded), tmp_path / "out").tasks
    assert yaml.safe_load(task_file.read_text())["file_mounts"]["/studyc-results"]["source"] == "r2://bkt/runs"
    assert sky.Task.from_yaml(str(task_file)).storage_mounts["/studyc-results"].source == "r2://bkt/runs"
    # Here: SkyPilot's client for the scheme, with its endpoint and credentials (~/.cloudflare).
    (home / ".cloudflare").mkdir(parents=True)
    (home / ".cloudflare" / "accountid").write_text("acct123\n")
    (home / ".cloudflare" / "r2.credentials").write_text("[r2]\naws_access_key_id = a\naws_secret_access_key = b\n")
    results = Results("r2://bkt/runs", "dry")
    assert results.objects.client.meta.endpoint_url == "https://acct123.r2.cloudflarestorage.com"
    assert (results.objects.bucket, results.base) == ("bkt", "runs/dry/")


def test_every_cloud_has_an_extra_with_skypilots_own():
    import tomllib

    from studyc.runtime.sky_executor import CLOUD_EXTRAS

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    sky_extra = {"k8s": "kubernetes"}
    for extra in CLOUD_EXTRAS.values():
        assert f"skypilot[{sky_extra.get(extra, extra)}]==0.14.*" in extras[extra], extra
