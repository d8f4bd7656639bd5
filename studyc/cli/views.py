"""What the commands print in one go: study errors, plans, dry runs, verdicts, status
rows. Rendering only: the commands in ``commands`` decide what to show and the exit code."""

from __future__ import annotations

import time
from typing import Any

import click

from studyc.errors import StudyError


def terminal(stderr: bool = False):
    from rich.console import Console

    # No emoji codes: "study.yaml:100:3" must not print as a 💯.
    return Console(stderr=stderr, highlight=False, soft_wrap=True, emoji=False)


def show_errors(errors: list[StudyError]) -> None:
    from rich.markup import escape

    console = terminal(stderr=True)
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


def explain_code(workdir: str) -> None:
    from studyc.compiler.code import IGNORE_FILE, code_files

    code = code_files(workdir)
    how = ("git: the files it tracks, and untracked source files it does not ignore" if code.source == "git"
           else "not a git repository: the source files (by extension) not named in .gitignore or " + IGNORE_FILE)
    click.echo(f"{code.describe()}\nrun ids cover these files ({how}):")
    for name in code.files:
        click.echo(f"  {name}")
    if code.skipped:
        click.echo(f"not counted (edit {IGNORE_FILE} to change):")
        for name, why in sorted(code.skipped.items()):
            click.echo(f"  {name}  ({why})")


def money(value: float) -> str:
    from studyc.compiler import view

    return view.money(value)


PLAN_ROWS = 60


PLAN_PHASES = 12


def print_plan(plan: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    from studyc.compiler import view
    from studyc.compiler.plan import DEFAULT_HOURS

    console = terminal()
    table = Table(title=f"{plan.study}{' (' + plan.profile + ')' if plan.profile else ''}: {len(plan.runs)} runs",
                  title_justify="left")
    for col in ("run", "arm", "stage", "seed", "resources", "start", "hours", "cost"):
        table.add_column(col, justify="right" if col in ("seed", "start", "hours", "cost") else "left",
                         min_width=16 if col == "run" else None)  # a run id in full: it is what you look up
    rows, hidden = view.run_rows(plan, PLAN_ROWS)
    for row in rows:
        table.add_row(*map(escape, row))
    console.print(table)
    if hidden:
        console.print(f"… and {hidden} more runs (studyc plan --json lists them all)")
    for line in view.schedule_lines(plan, PLAN_PHASES):
        console.print(escape(line))
    unknown = sum(1 for r in plan.runs if r.resources["hours"] is None)
    if unknown:
        console.print(f"[yellow]note:[/] {unknown} runs give no resources.hours; each is estimated at "
                      f"{DEFAULT_HOURS:g} h")
    _print_budget(console, plan)
    if not plan.budget["ok"]:
        console.print("  `studyc run` and `studyc compile` refuse this plan; --allow-over-budget overrides on purpose")


def print_dryrun(loaded: Any, plan: Any, dry: Any, launch: list[Any], allow_over_budget: bool) -> None:
    """`run --cloud --dryrun`: every managed job that would launch (``launch``, of the
    dry run ``dry``), as SkyPilot reads it, the offline checks and the budget check."""
    from rich.markup import escape

    from studyc.compiler import view

    console = terminal()
    console.print(f"{plan.study}{' (' + plan.profile + ')' if plan.profile else ''}: {len(launch)} managed jobs would "
                  "launch (dry run: nothing launched)")
    shown = launch[:PLAN_ROWS]  # one line each, names in full: they are what `sky jobs queue` shows
    width = max((len(t.name) for t in shown), default=0)
    res_width = max((len(t.resources) for t in shown), default=0)
    for task in shown:
        console.print(escape(f"  {task.name:<{width}}  {task.resources:<{res_width}}  {task.run.est_hours:>6.3g} h  "
                             f"{money(task.run.est_usd):>9}"))
    if len(launch) > PLAN_ROWS:
        console.print(f"… and {len(launch) - PLAN_ROWS} more (`studyc compile FILE -o DIR` writes every task)")
    if len(dry.tasks) > len(launch):
        console.print(f"reused, not launched: {len(dry.tasks) - len(launch)} runs that finished earlier")
    if dry.pending:
        stages = sorted({r.stage for r in dry.pending})
        console.print(f"then up to {len(dry.pending)} runs of promoted stages ({', '.join(stages)}), launched once "
                      f"the gates are judged: {sum(r.est_hours for r in dry.pending):.3g} h, "
                      f"{money(sum(r.est_usd for r in dry.pending))}")
    console.print(f"at most {plan.parallel} job{'s' if plan.parallel != 1 else ''} at once")
    if view.critical_path_text(plan):
        console.print(escape(view.critical_path_text(plan)))
    if plan.schedule.get("machine"):
        console.print("note: the totals' wall-clock packs the runs on the study's `machine`; on the cloud each job has "
                      "a machine of its own")
    if dry.recovery:
        console.print("job_recovery: " + ", ".join(f"{k}={v}" for k, v in dry.recovery.items()))
    for note in dry.recovery_notes:
        console.print(f"  {escape(note)}")
    console.print(f"results: {escape(dry.results)}/{escape(plan.study)}/<run id>/ (metrics.jsonl, log.txt, exit_code), "
                  "copied into the store" if dry.results else
                  "[yellow]results: none[/] (cloud.results not set): `studyc run --cloud` needs a bucket"
                  + (" or reads W&B" if loaded.study.tracking.wandb else ""))
    for name, present in dry.secrets.items():
        console.print(f"secret {name}: " + ("set in this shell (passed by name)" if present else
                                             f"[yellow]not set[/]: export {name} before launching"))
    if dry.pool:
        console.print(f"job pool {escape(dry.pool)}")
    for setup in dict.fromkeys(t.setup for t in launch):  # one per kind of machine (GPU or not)
        console.print("setup on each machine:" + "".join(f"\n  {escape(line)}" for line in setup.splitlines()))
    console.print(f"prices: {escape(dry.prices)}; the jobs controller's VM: about {money(dry.controller_usd)} more "
                  "(SkyPilot's default 4-CPU controller, held while jobs run plus 10 idle minutes)")
    for warning in dry.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    for problem in dry.problems:
        console.print(f"[bold red]problem:[/] {escape(problem)}")
    _print_budget(console, plan)
    if not plan.budget["ok"] and not allow_over_budget:
        console.print("`studyc run --cloud` refuses this plan; --allow-over-budget overrides on purpose")


def escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def note_tracking(study: Any) -> None:
    """Say up front when the study asks for W&B but runs cannot log there."""
    if study.tracking.wandb is None:
        return
    from studyc.runtime.wandb_log import unavailable

    why = unavailable(study.tracking.wandb.mode)
    if why:
        click.echo(f"note: W&B tracking skipped: {why}; metrics still go to the studyc store")


def print_verdicts(result: Any) -> None:
    from rich.markup import escape

    console = terminal()
    colors = {"PASS": "green", "FAIL": "red", "INCONCLUSIVE": "yellow", "INCOMPLETE": "magenta"}
    for name, h in result.verdicts["hypotheses"].items():
        color = colors.get(h["status"], "white")
        note = f" ({h['note']})" if h.get("note") else ""
        console.print(f"[bold {color}]{h['status']:<12}[/] {name}: {escape(h['sentence'] + note)}")
    if result.preregistration and result.preregistration["warning"]:
        console.print(f"[bold yellow]{escape(result.preregistration['text'])}[/]")
    decision = result.verdicts["decision"]
    if decision["status"] == "reached":
        console.print(f"decision: {escape(decision['then'])}")
    elif decision["status"] == "pending":
        console.print(f"decision: pending ({escape(decision['because'])})")
    if result.verdicts.get("tier_reached") is not None or result.verdicts.get("tiers"):
        console.print(f"tier reached: {result.verdicts.get('tier_reached') or 'none'}")
    console.print(f"report: [bold]{result.paths['report']}[/]")


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
                     "failure": row["failure"] or row["skipped"], "started_at": iso(row["started_at"]),
                     "ended_at": iso(row["ended_at"])})
    for run in planned.values():
        record = store.get(run.id)
        rows.append({"id": run.id, "arm": run.arm, "stage": run.stage, "seed": run.seed,
                     "status": record.status if record else "queued", "attempts": record.attempts if record else 0,
                     "failure": record.failure if record else None,
                     "started_at": iso(record.started_at) if record else None,
                     "ended_at": iso(record.ended_at) if record else None})
    return rows


def iso(ts: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else None


def _print_budget(console: Any, plan: Any) -> None:
    """The plan's totals, each budget line and what goes over."""
    from rich.markup import escape

    from studyc.compiler import view

    console.print(view.totals_line(plan))
    for line in view.budget_lines(plan):
        console.print(("[green]ok[/]    " if plan.budget["ok"] else "        ") + escape(line))
    for v in plan.budget["violations"]:
        console.print(f"[bold red]over budget:[/] {escape(v)}")
