"""The studyc command line. The only module that prints or exits.

Heavy modules (the compiler, runtime, report, matplotlib) are imported inside the
commands that need them, so `studyc validate` starts fast.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any, NoReturn

import click

from studyc.errors import RunError, StudyError, StudyErrors


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _show_errors(errors: list[StudyError]) -> None:
    from rich.markup import escape

    console = _console(stderr=True)
    for err in errors:
        console.print(f"[bold red]{escape(err.where)}[/]: {escape(err.message)}")
        if err.text is not None and err.line:
            gutter = f"{err.line:>5} | "
            console.print(f"[dim]{gutter}[/]{escape(err.text)}")
            console.print(" " * (len(gutter) + max(err.col - 1, 0)) + "[bold red]^[/]")
        if err.hint:
            console.print(f"  [cyan]hint:[/] {escape(err.hint)}")
    n = len(errors)
    console.print(f"[red]{n} problem{'s' if n != 1 else ''} found[/]")


def _fail_run_error(err: RunError) -> NoReturn:
    from rich.markup import escape

    console = _console(stderr=True)
    console.print(f"[bold red]error:[/] {escape(err.message)}")
    if err.hint:
        console.print(f"  [cyan]hint:[/] {escape(err.hint)}")
    sys.exit(1)


class _Group(click.Group):
    """Turns user errors into one clean screen and bugs into a short report."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except StudyErrors as exc:
            _show_errors(exc.errors)
            sys.exit(1)
        except RunError as exc:
            _fail_run_error(exc)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except KeyboardInterrupt:
            _console(stderr=True).print("[yellow]interrupted[/]")
            sys.exit(130)
        except Exception:  # an internal error: keep the traceback, show a short note
            crash = Path(".studyc") / "crash.log"
            try:
                crash.parent.mkdir(parents=True, exist_ok=True)
                crash.write_text(traceback.format_exc())
                where = f"the traceback is in {crash}"
            except OSError:
                where = traceback.format_exc()
            _console(stderr=True).print(f"[bold red]internal error in studyc[/] (a bug, not your study): "
                                        f"{sys.exc_info()[1]!r}; {where}")
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="studyc")
def main() -> None:
    """studyc: compile a study (arms, hypotheses, budget) into runs, run them, judge
    every hypothesis with confidence intervals, and write the report.

    \b
    studyc validate studies/*.yaml            check files (positions and hints)
    studyc plan STUDY --profile cpu           runs, estimates, schedule, budget
    studyc run STUDY --profile cpu            run locally, judge, write the report
    studyc status STUDY                       where each run stands
    studyc report STUDY                       re-render the report from the store
    """


profile_option = click.option("--profile", "-p", default=None, help="Overlay a profile of the study (e.g. cpu).")
store_option = click.option("--store", "store_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                            envvar="STUDYC_HOME", help="Store directory [default: .studyc, or $STUDYC_HOME].")


def _load(path: str, profile: str | None):
    from studyc.spec.loader import load

    return load(path, profile)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print errors as JSON (for editors and tools).")
def validate(files: tuple[Path, ...], as_json: bool) -> None:
    """Check study files and every profile in them. Exit 1 with positioned errors."""
    from studyc.spec.loader import validate_file

    errors: list[StudyError] = []
    for file in files:
        errors += validate_file(file)
    if as_json:
        click.echo(json.dumps({"ok": not errors, "files": [str(f) for f in files],
                               "errors": [e.to_dict() for e in errors]}, indent=2))
        sys.exit(1 if errors else 0)
    if errors:
        _show_errors(errors)
        sys.exit(1)
    for file in files:
        click.echo(f"ok  {file}")


@main.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@profile_option
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan(file: Path, profile: str | None, as_json: bool) -> None:
    """Show every run with its estimates, the totals, the schedule and the budget check."""
    from studyc.compiler.plan import compile_plan

    result = compile_plan(_load(str(file), profile))
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    _print_plan(result)


def _money(value: float) -> str:
    return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.4f}"


def _print_plan(plan: Any) -> None:
    from rich.table import Table

    console = _console()
    table = Table(title=f"{plan.study}{' (' + plan.profile + ')' if plan.profile else ''}: {len(plan.runs)} runs",
                  title_justify="left")
    for col in ("run", "arm", "stage", "seed", "resources", "start", "hours", "cost"):
        table.add_column(col, justify="right" if col in ("seed", "start", "hours", "cost") else "left")
    for run in plan.runs:
        res = run.resources
        what = res["accelerators"] or f"{res['cpus']} CPU"
        if res["vram_gb"]:
            what += f", {res['vram_gb']:g} GB"
        table.add_row(run.id if not run.pending else "(promoted)", run.arm, run.stage, str(run.seed), what,
                      f"{run.start_h:.2f} h", f"{run.est_hours:.3g} h", _money(run.est_usd))
    console.print(table)
    totals = plan.totals
    console.print(f"totals: {_money(totals['usd'])}, {totals['gpu_hours']:.2f} GPU-hours, "
                  f"{totals['wall_hours']:.2f} h wall-clock with {plan.parallel} at a time")
    budget = plan.budget
    if budget["ok"]:
        margins = ", ".join(f"{k} {v:+.2f}" for k, v in budget["margins"].items()) or "no limits set"
        console.print(f"[green]budget ok[/] (margin: {margins})")
    else:
        for v in budget["violations"]:
            console.print(f"[bold red]over budget:[/] {v}")


class _Progress:
    """Shows run events: a live table on a terminal, plain lines otherwise."""

    def __init__(self, plan: Any, live: bool):
        self.plan = plan
        self.total = len([r for r in plan.runs if not r.pending])
        self.states: dict[str, dict[str, Any]] = {}
        self.started = time.monotonic()
        self.live = None
        self.console = _console()
        self.primary: str | None = None
        if live:
            from rich.live import Live

            self.live = Live(self._table(), console=self.console, refresh_per_second=4, transient=False)

    def __enter__(self) -> "_Progress":
        if self.live:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.live.update(self._table())
            self.live.__exit__(None, None, None)

    def _counts(self) -> dict[str, int]:
        counts = {"done": 0, "cached": 0, "running": 0, "failed": 0, "skipped": 0}
        for state in self.states.values():
            counts[state["status"]] = counts.get(state["status"], 0) + 1
        return counts

    def _header(self) -> str:
        c = self._counts()
        finished = c["done"] + c["cached"] + c["failed"] + c["skipped"]
        elapsed = time.monotonic() - self.started
        eta = ""
        ran = c["done"] + c["failed"]
        if ran and finished < self.total:
            per = elapsed / max(ran, 1)
            eta = f", ETA ~{per * (self.total - finished) / max(1, c['running'] or 1):.0f} s"
        return (f"{finished}/{self.total} finished ({c['done']} done, {c['cached']} reused, {c['failed']} failed, "
                f"{c['skipped']} skipped), {c['running']} running, {self.total - finished - c['running']} queued; "
                f"{elapsed:.0f} s elapsed{eta}")

    def _table(self):
        from rich.table import Table

        table = Table(title=self._header(), title_justify="left", expand=False)
        for col in ("arm", "seed", "status", "attempt", "time", "latest"):
            table.add_column(col)
        for state in self.states.values():
            run = state["run"]
            elapsed = (state.get("end") or time.monotonic()) - state["start"] if state.get("start") else None
            table.add_row(run.arm, str(run.seed), state["status"] + (f" ({state['failure']})" if state.get("failure") else ""),
                          str(state.get("attempt", "")), f"{elapsed:.1f} s" if elapsed is not None else "",
                          state.get("latest", ""))
        return table

    def __call__(self, event: Any) -> None:
        run = event.run
        state = self.states.setdefault(run.id, {"run": run, "status": "queued"})
        stamp = time.strftime("%H:%M:%S")
        line = None
        if event.kind == "cached":
            state["status"] = "cached"
            line = f"reuse  {run.arm} seed {run.seed} ({run.id}): finished earlier"
        elif event.kind == "start":
            state.update(status="running", start=time.monotonic(), attempt=event.attempt, end=None, failure=None)
            line = f"start  {run.arm} seed {run.seed} ({run.id}), attempt {event.attempt}"
        elif event.kind == "progress":
            state["latest"] = _metrics_text(event.metrics)
        elif event.kind == "retry":
            state.update(status="running", failure=event.failure)
            line = f"retry  {run.arm} seed {run.seed}: {event.failure}; {event.message}"
        elif event.kind == "skip":
            state["status"] = "skipped"
            line = f"skip   {run.arm} seed {run.seed}: {event.message}"
        elif event.kind == "end":
            state.update(status=event.status, end=time.monotonic(), failure=event.failure)
            took = state["end"] - state.get("start", state["end"])
            if event.status == "done":
                line = f"done   {run.arm} seed {run.seed} in {took:.1f} s  {_metrics_text(event.metrics)}"
            else:
                line = f"FAILED {run.arm} seed {run.seed} after {took:.1f} s: {event.failure}" + (
                    f" ({event.message})" if event.message else "")
        if self.live:
            self.live.update(self._table())
        elif line:
            click.echo(f"[{stamp}] {line}", err=False)


def _metrics_text(metrics: dict[str, float], limit: int = 4) -> str:
    shown = [(k, v) for k, v in metrics.items() if k not in ("t", "step")][:limit]
    return " ".join(f"{k}={v:.4g}" for k, v in shown)


def _store(store_dir: Path | None):
    from studyc.runtime.store import Store

    return Store(store_dir)


@main.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@profile_option
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Report directory [default: the study's report.dir, or reports/<study>/, plus /<profile>].")
@click.option("--rerun", multiple=True, metavar="ARM", help="Run ARM again even if its runs finished (repeatable).")
@click.option("--allow-over-budget", is_flag=True, help="Start even though the estimate exceeds the budget.")
@click.option("--parallel", type=click.IntRange(min=1), default=None, help="At most this many runs at once.")
@click.option("--cloud", is_flag=True, help="Run on SkyPilot managed jobs instead of this machine.")
@click.option("--dryrun", is_flag=True, help="With --cloud: print what would launch, launch nothing.")
@click.option("--fail-on", type=click.Choice(["fail", "inconclusive"]), default=None,
              help="Exit 3 when a hypothesis FAILs (or is not PASS, with 'inconclusive').")
@store_option
def run(file: Path, profile: str | None, out: Path | None, rerun: tuple[str, ...], allow_over_budget: bool,
        parallel: int | None, cloud: bool, dryrun: bool, fail_on: str | None, store_dir: Path | None) -> None:
    """Compile, run every stage locally (finished runs are reused), judge, write the report."""
    from studyc import orchestrate

    if cloud or dryrun:
        raise RunError("running on the cloud is not available in this version of studyc",
                       "run locally (without --cloud), or use `studyc plan` to see the cloud estimate")
    loaded = _load(str(file), profile)
    unknown = [a for a in rerun if a not in _arm_names(loaded)]
    if unknown:
        from studyc.errors import did_you_mean

        raise RunError(f"--rerun: unknown arm '{unknown[0]}'", did_you_mean(unknown[0], _arm_names(loaded)))
    store = _store(store_dir)
    from studyc.compiler.plan import compile_plan

    preview = compile_plan(loaded)
    orchestrate.check_budget(preview, allow_over_budget)
    live = sys.stdout.isatty()
    click.echo(f"{loaded.study.study}{' (' + profile + ')' if profile else ''}: {len(preview.runs)} runs, "
               f"estimated {_money(preview.totals['usd'])}, {preview.totals['wall_hours'] * 60:.1f} min wall-clock")
    with _Progress(preview, live) as progress:
        plan_ = orchestrate.execute(loaded, store, progress, set(rerun), allow_over_budget, parallel=parallel)
    result = orchestrate.report(loaded, store, out, plan_)
    _print_verdicts(result)
    _exit_for_verdicts(result.verdicts, fail_on)


def _arm_names(loaded: Any) -> list[str]:
    from studyc.spec.arms import expand_arms

    return list(expand_arms(loaded.study))


def _print_verdicts(result: Any) -> None:
    console = _console()
    colors = {"PASS": "green", "FAIL": "red", "INCONCLUSIVE": "yellow", "INCOMPLETE": "magenta"}
    for name, h in result.verdicts["hypotheses"].items():
        color = colors.get(h["status"], "white")
        console.print(f"[bold {color}]{h['status']:<12}[/] {name}: {h['sentence']}")
    decision = result.verdicts["decision"]
    if decision["status"] == "reached":
        console.print(f"decision: {decision['then']}")
    elif decision["status"] == "pending":
        console.print(f"decision: pending ({decision['because']})")
    if result.verdicts.get("tier_reached") is not None or result.verdicts.get("tiers"):
        console.print(f"tier reached: {result.verdicts.get('tier_reached') or 'none'}")
    console.print(f"report: [bold]{result.paths['report']}[/]")


def _exit_for_verdicts(verdicts: dict[str, Any], fail_on: str | None) -> None:
    if fail_on is None:
        return
    statuses = [h["status"] for h in verdicts["hypotheses"].values()]
    if "FAIL" in statuses or (fail_on == "inconclusive" and any(s != "PASS" for s in statuses)):
        sys.exit(3)


@main.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@profile_option
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=None, help="Report directory.")
@click.option("--fail-on", type=click.Choice(["fail", "inconclusive"]), default=None,
              help="Exit 3 when a hypothesis FAILs (or is not PASS, with 'inconclusive').")
@store_option
def report(file: Path, profile: str | None, out: Path | None, fail_on: str | None, store_dir: Path | None) -> None:
    """Judge and re-render the report from the store. Runs nothing."""
    from studyc import orchestrate

    loaded = _load(str(file), profile)
    result = orchestrate.report(loaded, _store(store_dir), out)
    _print_verdicts(result)
    _exit_for_verdicts(result.verdicts, fail_on)


def status_rows(loaded: Any, store: Any) -> list[dict[str, Any]]:
    from studyc.compiler.plan import compile_plan

    plan_ = compile_plan(loaded)
    known = {(r["stage"], r["arm"], r["seed"]): r for r in store.study_runs(loaded.study.study, loaded.profile)}
    rows = []
    planned = {(r.stage, r.arm, r.seed): r for r in plan_.runs if not r.pending}
    for key, row in known.items():
        planned.pop(key, None)
        rows.append({"id": row["run_id"], "arm": row["arm"], "stage": row["stage"], "seed": row["seed"],
                     "status": "skipped" if row["skipped"] else row["status"], "attempts": row["attempts"],
                     "failure": row["failure"] or row["skipped"], "started_at": _iso(row["started_at"]),
                     "ended_at": _iso(row["ended_at"])})
    for run in planned.values():
        record = store.get(run.id)
        rows.append({"id": run.id, "arm": run.arm, "stage": run.stage, "seed": run.seed,
                     "status": record.status if record else "queued", "attempts": record.attempts if record else 0,
                     "failure": record.failure if record else None,
                     "started_at": _iso(record.started_at) if record else None,
                     "ended_at": _iso(record.ended_at) if record else None})
    return rows


def _iso(ts: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else None


@main.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@profile_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@store_option
def status(file: Path, profile: str | None, as_json: bool, store_dir: Path | None) -> None:
    """Where each run of the study stands (from the store)."""
    loaded = _load(str(file), profile)
    rows = status_rows(loaded, _store(store_dir))
    if as_json:
        click.echo(json.dumps({"study": loaded.study.study, "profile": profile, "runs": rows}, indent=2))
        return
    from rich.table import Table

    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    table = Table(title=f"{loaded.study.study}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
                  title_justify="left")
    for col in ("id", "arm", "stage", "seed", "status", "attempts", "failure", "ended"):
        table.add_column(col)
    for row in rows:
        table.add_row(row["id"], row["arm"], row["stage"], str(row["seed"]), row["status"], str(row["attempts"]),
                      row["failure"] or "", row["ended_at"] or "")
    _console().print(table)


if __name__ == "__main__":  # pragma: no cover
    main()
