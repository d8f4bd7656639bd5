"""The studyc commands: parse the command line, call the layers below, decide the exit
code. What they print is in ``views`` (one-shot output) and ``live`` (the progress of a
run); together these are the only modules that print or exit.

Heavy modules (the compiler, runtime, report, matplotlib) are imported inside the
commands that need them, so `studyc validate` starts fast.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, NoReturn

import click

from studyc import protocol
from studyc.cli import views
from studyc.cli.live import Progress, cloud_options
from studyc.errors import RunError, StudyError, StudyErrors

# Exit codes, so that scripts can tell what happened (documented in `studyc --help`).
EXIT_OK = 0
EXIT_USER = 1  # the study, an input or the budget: the message says what to fix
EXIT_USAGE = 2  # click's own code for a mistyped command line
EXIT_FAIL_ON = 3  # --fail-on: a hypothesis FAILed (or was not PASS)
EXIT_INTERNAL = 4  # a bug in studyc


def _fail_run_error(err: RunError) -> NoReturn:
    from rich.markup import escape

    console = views.terminal(stderr=True)
    console.print(f"[bold red]error:[/] {escape(err.message)}")
    if err.hint:
        console.print(f"  [cyan]hint:[/] {escape(err.hint)}")
    sys.exit(EXIT_USER)


class _Group(click.Group):
    """Turns user errors into one clean screen and bugs into a short report."""

    def invoke(self, ctx: click.Context) -> Any:
        from studyc.artifacts import begin_invocation

        begin_invocation()  # every artifact this command writes shares one invocation id
        try:
            return super().invoke(ctx)
        except StudyErrors as exc:
            views.show_errors(exc.errors)
            sys.exit(EXIT_USER)
        except RunError as exc:
            _fail_run_error(exc)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except KeyboardInterrupt:
            views.terminal(stderr=True).print("[yellow]interrupted[/]")
            sys.exit(130)
        except BrokenPipeError:  # the reader stopped reading (`studyc plan ... | head`): nothing to say
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nor at exit, flushing
            sys.exit(0)
        except OSError as exc:  # a disk or permission fault the checks up front could not foresee
            from studyc.runtime.preflight import os_error

            _fail_run_error(os_error(exc, "write or read"))
        except Exception:  # an internal error: keep the traceback, show a short note
            from studyc.runtime.store import default_home

            crash = default_home() / "crash.log"
            try:
                crash.parent.mkdir(parents=True, exist_ok=True)
                crash.write_text(traceback.format_exc())
                where = f"the traceback is in {crash}"
            except OSError:
                where = traceback.format_exc()
            from rich.markup import escape

            views.terminal(stderr=True).print(f"[bold red]internal error in studyc[/] (a bug, not your study): "
                                        f"{escape(repr(sys.exc_info()[1]))}; {escape(where)}")
            sys.exit(EXIT_INTERNAL)


EXIT_CODES_HELP = """\b
Exit codes:
  0  ok
  1  a user error: the study, an input or the budget (the message says what to fix)
  2  usage: an unknown command or option (click)
  3  --fail-on: a hypothesis FAILed (or, with 'inconclusive', was not PASS)
  4  an internal error in studyc (a bug; the traceback is in crash.log)
"""


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.version_option(package_name="studyc")
def main() -> None:
    """studyc: compile a study (arms, hypotheses, budget) into runs, run them, judge
    every hypothesis with confidence intervals, and write the report.

    \b
    studyc validate studies/*.yaml            check files (positions and hints)
    studyc plan STUDY --profile cpu           runs, estimates, schedule, budget
    studyc compile STUDY -o DIR               plan.json + one SkyPilot task per run
    studyc run STUDY --profile cpu            run locally, judge, write the report
    studyc status STUDY                       where each run stands
    studyc report STUDY                       re-render the report from the store
    studyc promote STUDY [--to FILE]          write the champion's config into the study (or FILE)
    studyc schema > studyc.schema.json        the JSON Schema of study files, for editors
    studyc store repair                       a damaged store: restore its backup, or keep what is readable
    """


profile_option = click.option("--profile", "-p", default=None, help="Overlay a profile of the study (e.g. cpu).")
store_option = click.option("--store", "store_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                            envvar=protocol.HOME, help=f"Store directory [default: .studyc, or ${protocol.HOME}].")


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
        sys.exit(EXIT_USER if errors else EXIT_OK)
    if errors:
        views.show_errors(errors)
        sys.exit(EXIT_USER)
    for file in files:
        click.echo(f"ok  {file}")


@main.command()
def schema() -> None:
    """Print the JSON Schema of study files (for editors: `studyc schema > studyc.schema.json`)."""
    from studyc.spec.schema import schema_text

    click.echo(schema_text(), nl=False)


@main.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@profile_option
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--seeds-needed", is_flag=True, help="Per hypothesis, the seeds per arm that likely give a verdict "
              "(PASS or FAIL), from the pilot runs in the store or the study's declared spread, with their cost.")
@click.option("--probability", type=click.FloatRange(0.5, 0.99), default=0.8, show_default=True,
              help="With --seeds-needed: the chance of a verdict to plan for.")
@click.option("--design", type=click.Choice(["fixed", "confidence_sequence"]), default=None,
              help="With --seeds-needed: plan for this design [default: the study's, or confidence_sequence once "
                   "--until-settled added seeds].")
@click.option("--parallel", type=click.IntRange(min=1), default=None,
              help="At most this many runs at once, instead of budget.parallel (1: one after another).")
@click.option("--explain", is_flag=True, help="List the files whose content is the runs' code (it is in their ids).")
@store_option
def plan(file: Path, profile: str | None, as_json: bool, seeds_needed: bool, probability: float, design: str | None,
         parallel: int | None, explain: bool, store_dir: Path | None) -> None:
    """Show every run with its estimates, the schedule (which runs share the machine
    when, and the critical path through the stages), the totals and the budget check.
    Runs nothing."""
    from studyc.compiler.plan import compile_plan

    if design and not seeds_needed:
        raise RunError("--design goes with --seeds-needed", "add --seeds-needed; the study's design is stats.design")
    if seeds_needed:
        _seeds_needed(_load(str(file), profile), store_dir, probability, design, as_json)
        return
    loaded = _load(str(file), profile)
    if explain:  # the code's files alone: reading and hashing them is what compiling would add
        from studyc.compiler.ids import study_root

        views.explain_code(str(study_root(loaded.path, loaded.study.run.workdir)))
        return
    result = compile_plan(loaded, parallel)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    views.print_plan(result)


@main.command(name="compile")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@profile_option
@click.option("--out", "-o", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for plan.json and tasks/<run id>.sky.yaml.")
@click.option("--allow-over-budget", is_flag=True, help="Write the files even though the estimate exceeds the budget.")
def compile_(file: Path, profile: str | None, out: Path, allow_over_budget: bool) -> None:
    """Write DIR/plan.json and one SkyPilot task per run (DIR/tasks/<run id>.sky.yaml).
    Same study, same bytes: no timestamps, no absolute paths. Runs nothing."""
    from studyc.compiler.plan import compile_plan
    from studyc.compiler.sky import TASKS_DIR, write_compiled
    from studyc.compiler.view import totals_line
    from studyc.orchestrate import check_budget

    loaded = _load(str(file), profile)
    result = compile_plan(loaded)
    check_budget(result, allow_over_budget)
    from studyc.runtime.preflight import writable_dir

    writable_dir(out, "write the compiled tasks in")
    started = time.monotonic()
    compiled = write_compiled(loaded, result, out)
    pending = (f"; task files for {compiled.pending} promoted run{'s' if compiled.pending != 1 else ''} come once "
               "the gates are judged" if compiled.pending else "")
    click.echo(f"wrote {compiled.plan_file} and {len(compiled.tasks)} SkyPilot tasks in {out / TASKS_DIR} "
               f"in {time.monotonic() - started:.1f} s{pending}")
    click.echo(totals_line(result))
    if not result.budget["ok"]:
        click.echo("over budget (allowed by --allow-over-budget): " + "; ".join(result.budget["violations"]))
    click.echo(f"launch one: cd {out} && sky jobs launch {TASKS_DIR}/<run id>.sky.yaml")


def _seeds_needed(loaded: Any, store_dir: Path | None, probability: float, design: str | None, as_json: bool) -> None:
    from studyc.report.collect import Results, collect
    from studyc.report.seeds_needed import seeds_needed, summary_lines
    from studyc.report.sequential import design_of, read_looks

    home = store_dir or _default_home()
    results, looks = Results(loaded.study, loaded.profile, [], {}, {}, []), []
    if (home / "store.db").exists():  # a pilot, when the store has one
        store = _store(home, readonly=True)
        results, looks = collect(loaded.study, store, loaded.profile), read_looks(store, loaded.study.study, loaded.profile)
    out = seeds_needed(loaded, results, probability, design or design_of(loaded.study, looks))
    if as_json:
        click.echo(json.dumps(out, indent=2))
    else:
        from rich.markup import escape

        for line in summary_lines(out):  # a hypothesis' figures, then its assumptions, indented
            views.terminal().print(escape(line) if line.startswith(" ") else f"[bold]{escape(line)}[/]")
    if any(h["refused"] for h in out["hypotheses"]):
        sys.exit(EXIT_USER)


def _store(store_dir: Path | None, readonly: bool = False):
    from studyc.runtime.store import Store

    return Store(store_dir, readonly=readonly)


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
@click.option("--cancel-on-interrupt", is_flag=True,
              help="With --cloud: Ctrl-C cancels the jobs in flight without asking [default: ask on a terminal, "
                   "else leave them running].")
@click.option("--fail-on", type=click.Choice(["fail", "inconclusive"]), default=None,
              help="Exit 3 when a hypothesis FAILs (or is not PASS, with 'inconclusive').")
@click.option("--until-settled", is_flag=True, help="After the planned seeds, add seeds in batches to the arms of "
              "open hypotheses until each is PASS or FAIL, judged on the confidence sequence (docs/sequential.md).")
@click.option("--max-seeds", type=click.IntRange(min=2), default=None,
              help="With --until-settled: at most this many seeds per arm [default: 20].")
@click.option("--batch", type=click.IntRange(min=1), default=None,
              help="With --until-settled: seeds added per arm between looks [default: fill the parallel slots].")
@store_option
def run(file: Path, profile: str | None, out: Path | None, rerun: tuple[str, ...], allow_over_budget: bool,
        parallel: int | None, cloud: bool, dryrun: bool, cancel_on_interrupt: bool, fail_on: str | None,
        until_settled: bool, max_seeds: int | None, batch: int | None, store_dir: Path | None) -> None:
    """Compile, run every stage (locally, or as SkyPilot managed jobs with --cloud;
    finished runs are reused), judge, write the report."""
    from studyc import orchestrate

    if (dryrun or cancel_on_interrupt) and not cloud:
        flag = "--dryrun" if dryrun else "--cancel-on-interrupt"
        raise RunError(f"{flag} goes with --cloud", "add --cloud (a local run's plan: `studyc plan FILE`)")
    if (max_seeds or batch) and not until_settled:
        raise RunError(f"{'--max-seeds' if max_seeds else '--batch'} goes with --until-settled",
                       "add --until-settled, or set the seeds in the study (run.seeds)")
    if until_settled and (rerun or dryrun):
        raise RunError(f"--until-settled does not go with {'--rerun' if rerun else '--dryrun'}",
                       "run the arm again first (`studyc run --rerun ARM`), then --until-settled; the seeds it "
                       "would add depend on results, so there is no dry run of them" if rerun else
                       "`studyc plan --seeds-needed` estimates the seeds it would add")
    loaded = _load(str(file), profile)
    if until_settled:
        from studyc.orchestrate_sequential import check_sequential

        check_sequential(loaded)
        if loaded.study.stats.design == "fixed":
            click.echo("note: the study declares stats.design: fixed; with seeds added until settled it is judged on "
                       "the confidence sequence (docs/sequential.md), in this report and every later one")
    names = _arm_names(loaded)
    unknown = [a for a in rerun if a not in names]
    if unknown:
        from studyc.errors import did_you_mean

        raise RunError(f"--rerun: unknown arm '{unknown[0]}'", did_you_mean(unknown[0], names))
    compiled = orchestrate.compile_study(loaded, parallel)  # once: execute and report take it from here
    preview = compiled.plan
    if dryrun:
        _dryrun(loaded, preview, set(rerun), store_dir, allow_over_budget)
        return
    store = _store(store_dir)
    orchestrate.check_budget(preview, allow_over_budget)
    from studyc.runtime.preflight import check_run_outputs

    check_run_outputs(out or orchestrate.default_out(loaded), store.home / "runs", loaded.study.report.leaderboard)
    live = sys.stdout.isatty()
    click.echo(f"{loaded.study.study}{' (' + profile + ')' if profile else ''}: {len(preview.runs)} runs, "
               f"estimated {views.money(preview.totals['usd'])}, {preview.totals['wall_hours'] * 60:.1f} min wall-clock, "
               f"code {preview.code_version} (`studyc plan --explain` lists its files)")
    if not cloud:  # on the cloud, runs log to W&B with the key passed as a secret
        views.note_tracking(loaded.study)
    from studyc.stageflow import SmokeFailed

    stopped = None
    with Progress(preview, live, parallel, remote=cloud) as progress:
        options = cloud_options(file, profile, progress, cancel_on_interrupt) if cloud else None
        try:
            if until_settled:
                from studyc.orchestrate_sequential import run_until_settled

                settled = run_until_settled(loaded, store, max_seeds or 20, batch, progress, progress.look,
                                            allow_over_budget, parallel=parallel, cloud=options)
                plan_ = settled.plan
            else:
                plan_ = orchestrate.execute(loaded, store, progress, set(rerun), allow_over_budget,
                                            parallel=parallel, cloud=options, compiled=compiled)
        except SmokeFailed as exc:  # the report says so too
            stopped, plan_ = exc, preview
    if until_settled and stopped is None:
        click.echo(f"stopped after {len(settled.looks)} look{'s' if len(settled.looks) != 1 else ''}: {settled.reason}")
    result = orchestrate.report(loaded, store, out, plan_)
    if stopped is not None:
        click.echo(f"report: {result.paths['report']}")
        raise stopped
    views.print_verdicts(result)
    _exit_for_verdicts(result.verdicts, fail_on)


def _dryrun(loaded: Any, plan: Any, rerun: set[str], store_dir: Path | None, allow_over_budget: bool) -> None:
    """`run --cloud --dryrun`: contacts nothing (the store is only read, when there is one);
    refused (exit 1) over budget or when an offline check found a problem."""
    from studyc.runtime.sky_executor import dryrun

    dry = dryrun(loaded, plan)
    home = store_dir or _default_home()
    finished: set[str] = set()
    if (home / "store.db").exists():  # runs that finished earlier are reused, not launched
        records = _store(home, readonly=True).records([t.run.id for t in dry.tasks])
        finished = {i for i, r in records.items() if r.status == "done"}
    launch = [t for t in dry.tasks if t.run.id not in finished or t.run.arm in rerun]
    views.print_dryrun(loaded, plan, dry, launch, allow_over_budget)
    if (not plan.budget["ok"] and not allow_over_budget) or dry.problems:
        sys.exit(EXIT_USER)


def _default_home() -> Path:
    from studyc.runtime.store import default_home

    return default_home()


def _arm_names(loaded: Any) -> list[str]:
    from studyc.spec.arms import expand_arms

    return list(expand_arms(loaded.study))


def _exit_for_verdicts(verdicts: dict[str, Any], fail_on: str | None) -> None:
    if fail_on is None:
        return
    statuses = [h["status"] for h in verdicts["hypotheses"].values()]
    if "FAIL" in statuses or (fail_on == "inconclusive" and any(s != "PASS" for s in statuses)):
        sys.exit(EXIT_FAIL_ON)


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
    from studyc.runtime.preflight import check_report_dir

    check_report_dir(out or orchestrate.default_out(loaded))
    result = orchestrate.report(loaded, _store(store_dir, readonly=True), out)
    for note in result.notes:
        views.terminal().print(f"[yellow]note:[/] {views.escape(note)}")
    views.print_verdicts(result)
    _exit_for_verdicts(result.verdicts, fail_on)


@main.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@profile_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@store_option
def status(file: Path, profile: str | None, as_json: bool, store_dir: Path | None) -> None:
    """Where each run of the study stands (from the store)."""
    loaded = _load(str(file), profile)
    store = _store(store_dir, readonly=True)
    with store.guard():
        rows = views.status_rows(loaded, store)
        sequential = _sequential_status(loaded, store)
    if as_json:
        click.echo(json.dumps({"study": loaded.study.study, "profile": profile, "runs": rows,
                               **({"sequential": sequential} if sequential else {})}, indent=2))
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
    views.terminal().print(table)
    if sequential:
        from rich.markup import escape

        views.terminal().print(f"{sequential['design']}: {sequential['looks']} looks so far")
        for h in sequential["hypotheses"]:
            views.terminal().print(f"  {h['hypothesis']} {h['status']}: {escape(h['interval'])} "
                             f"({h['seeds_per_arm']} seeds per arm)")


def _sequential_status(loaded: Any, store: Any) -> dict[str, Any] | None:
    """Under the confidence_sequence design: each hypothesis' interval against its
    threshold and its seeds, as the latest look of --until-settled saw them (as the
    live display shows), else as judged now."""
    from studyc.report.sequential import DESIGN, SequentialJudge, design_of, open_lines, read_looks

    looks = read_looks(store, loaded.study.study, loaded.profile)
    if design_of(loaded.study, looks) != DESIGN:
        return None
    if looks:
        return {"design": DESIGN, "looks": len(looks), "at": looks[-1]["at"], "seeds": looks[-1]["seeds"],
                "hypotheses": looks[-1]["hypotheses"]}
    from studyc.report.collect import collect

    verdicts = SequentialJudge(loaded.study, collect(loaded.study, store, loaded.profile)).all()
    return {"design": DESIGN, "looks": 0, "hypotheses": open_lines(verdicts)}


@main.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@profile_option
@click.option("--to", "to", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write into this config file (YAML, or JSON by its .json suffix; created if absent) instead of "
                   "the study's run.config.")
@click.option("--arm", default=None, help="Promote this arm instead of the champion (e.g. the one a decision names).")
@click.option("--dryrun", is_flag=True, help="Print the change as a diff; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print what was promoted as JSON.")
@store_option
def promote(file: Path, profile: str | None, to: Path | None, arm: str | None, dryrun: bool, as_json: bool,
            store_dir: Path | None) -> None:
    """Write the champion's config (run.config, its arm, its stage) back into the study
    as its new run.config values, or into a config file, keeping comments and layout.
    With report.leaderboard set, the champion's row is marked as promoted."""
    from studyc.promote import promote as promote_

    home = store_dir or _default_home()
    if not (home / "store.db").exists():  # no store: nothing to judge, and nothing is created
        raise RunError(f"no results yet: there is no store at {home}",
                       f"run the study first (`studyc run {file}`), or point --store (or $STUDYC_HOME) at its store")
    done = promote_(file, profile, _store(home, readonly=True), to, arm, dryrun)
    if as_json:
        click.echo(json.dumps(done.to_dict(), indent=2))
        return
    from rich.markup import escape

    console = views.terminal()
    where = f"{done.target}" + (f" ({done.at})" if done.at else "")
    console.print(f"{'would promote' if dryrun else 'promoted'} [bold]{escape(done.winner.arm)}[/] "
                  f"({escape(done.winner.why)}) into {escape(where)}")
    if not done.changes:
        console.print("nothing to change: the file already holds these values")
    for change in done.changes:
        old = "(new key)" if change["added"] else json.dumps(change["old"])
        console.print(f"  {escape(change['key'])}: {escape(old)} -> {escape(json.dumps(change['new']))}")
    if dryrun and done.diff:
        click.echo(done.diff, nl=False)
    if done.leaderboard:
        console.print(f"leaderboard {escape(done.leaderboard['path'])}: the row of {escape(done.winner.arm)} is marked "
                      "promoted")
    if done.decision.get("status") == "reached":
        console.print(f"decision: {escape(done.decision['then'])}")
    elif done.decision.get("status") == "pending":
        console.print(f"[yellow]decision: pending[/] ({escape(done.decision['because'])})")


@main.group(name="store")
def store_group() -> None:
    """Look after the store (.studyc/store.db, or $STUDYC_HOME)."""


@store_group.command()
@click.option("--fresh", is_flag=True, help="Start an empty store instead (finished runs will run again).")
@store_option
def repair(fresh: bool, store_dir: Path | None) -> None:
    """Set a damaged store aside (it is kept) and put a working one in its place: the
    backup taken before the last run when it is sound, else every row still readable."""
    from studyc.runtime.store import default_home, repair as repair_store

    click.echo(repair_store(store_dir or default_home(), fresh=fresh))


if __name__ == "__main__":  # pragma: no cover
    main()
