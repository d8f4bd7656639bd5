"""`studyc validate` stays light: it never imports the heavy extras or the layers after
the spec (timing is bench/cli_startup.py's job, not a test's)."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEAVY = {"torch", "sky", "wandb", "ruamel", "studyc.promote", "studyc.yamledit", "matplotlib", "numpy", "scipy", "jinja2", "rich", "sqlite3",
         "studyc.compiler", "studyc.report", "studyc.runtime.scheduler", "studyc.runtime.store"}

PROBE = """
import glob, json, sys
from studyc.cli import main
sys.argv = ["studyc", "validate", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def imported_by_validate(*files: str) -> tuple[int, set[str]]:
    done = subprocess.run([sys.executable, "-c", PROBE, *files], cwd=REPO, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.splitlines()[-1])
    return result["code"], set(result["modules"])


def test_validate_imports_no_heavy_module():
    code, modules = imported_by_validate(*sorted(str(p) for p in (REPO / "studies").glob("*.yaml")))
    assert code == 0
    loaded = {h for h in HEAVY if h in modules or any(m.startswith(h + ".") for m in modules)}
    assert not loaded, f"studyc validate imported {sorted(loaded)}"


def test_validate_of_a_broken_file_imports_only_what_prints_errors():
    broken = str(REPO / "tests" / "spec" / "broken" / "check_arm_typo.yaml")
    code, modules = imported_by_validate(broken)
    assert code == 1
    assert "rich" in modules  # the error screen
    assert not {"torch", "numpy", "scipy", "matplotlib", "wandb", "sky"} & {m.split(".")[0] for m in modules}
