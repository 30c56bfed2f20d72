"""Commands that help an admin change the configuration safely.

Besides previews, conflicts and held changes, they send the config events an admin
gives one at a time (manual memberships, a rule's status, the dashboard order),
each published and awaited as `mentorflow apply` publishes and awaits its file.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

from infra.kafka import ensure_topics
from infra.settings import Settings
from infra.store import Store
from rules.ruleset import Pair
from schemas.common import new_event_id, utc_now
from schemas.config import (
    ConfigConfirmed,
    ConfigEvent,
    ManualMembershipAdded,
    ManualMembershipRemoved,
    RuleDeleted,
    RulePaused,
    RulePublished,
    RulesReordered,
)
from schemas.segments import Role
from workers.admin import (
    PairPreview,
    find_conflicts,
    near_misses_of,
    preview_config,
)
from workers.config_file import load_config_file
from workers.config_outcome import EXIT_STATUS, describe_outcome, publish_config
from workers.errors import WorkerError
from workers.runtime import build_engine, open_store, running_stack_settings

logger = logging.getLogger(__name__)

# Piped into a file, a mail or another program, rich would wrap at 80 columns
# and break a table's cells over several lines; COLUMNS still overrides this.
PIPED_WIDTH = 200


def command_console() -> Console:
    """Return the console a command prints its answer to.

    No markup: ids and HR values are printed as they are, and "[emea]" or
    "[/x]" in one would be taken for a style, dropped, or fail the command.
    """
    piped = not sys.stdout.isatty() and not os.environ.get("COLUMNS")
    return Console(markup=False, width=PIPED_WIDTH if piped else None)


console = command_console()

# How many person ids a table cell lists before it says how many more.
SHOWN_PEOPLE = 8

# The longest program, rule or person id the config events accept.
MAX_ID_LENGTH = 200


def run_preview(settings: Settings, args: argparse.Namespace) -> int:
    """Print the adds and removes publishing a config file would cause now."""
    config = load_config_file(args.config)
    settings = running_stack_settings(settings)
    store = open_store(settings, read_only=True)
    try:
        with store.transaction() as tx:
            store_counts: dict[str, int] = Counter()
            for (program_id, _), count in tx.membership_counts().items():
                store_counts[program_id] += count
        previews = preview_config(build_engine(settings, store), config)
    finally:
        store.close()
    if not previews:
        console.print("publishing this config would change no membership")
        return 0
    table = Table(title=f"what publishing {args.config} would change now")
    for column in ("program", "role", "adds", "removes", "added", "removed"):
        table.add_column(column)
    for (program_id, role), preview in previews.items():
        table.add_row(
            program_id,
            role.value,
            str(len(preview.added)),
            str(len(preview.removed)),
            _people(preview.added),
            _people(preview.removed),
        )
    console.print(table)
    held = would_be_held(settings, store_counts, previews)
    if held:
        console.print(
            f"publishing it would be held for confirmation: it would remove {held}"
        )
    return 0


def would_be_held(
    settings: Settings,
    members: dict[str, int],
    previews: dict[Pair, PairPreview],
) -> str:
    """Say which programs would trip the blast-radius guard, or ""."""
    worker = settings.worker
    removals: Counter[str] = Counter()
    for (program_id, _), preview in previews.items():
        removals[program_id] += len(preview.removed)
    tripped = [
        f"{removed} of {members.get(program_id, 0)} members of {program_id}"
        for program_id, removed in sorted(removals.items())
        if removed >= worker.blast_radius_min_removals
        and removed > worker.blast_radius_share * members.get(program_id, 0)
        and worker.blast_radius_share < 1
    ]
    return ", ".join(tripped)


def run_conflicts(settings: Settings, args: argparse.Namespace) -> int:
    """List people matched by both an add and a remove rule of a program role."""
    settings = running_stack_settings(settings)
    store = open_store(settings, read_only=True)
    try:
        today = build_engine(settings, store).clock.today()
        conflicts = find_conflicts(store, today)
    finally:
        store.close()
    if not conflicts:
        console.print("no person is matched by both an add and a remove rule")
        return 0
    table = Table(title=f"people where dashboard order decides, as of {today}")
    for column in ("program", "role", "add rule", "remove rule", "people", "decides"):
        table.add_column(column)
    for pair, people in sorted(conflicts.items()):
        table.add_row(
            pair.program_id,
            pair.role.value,
            f"{pair.add_rule_id} (#{pair.add_position})",
            f"{pair.remove_rule_id} (#{pair.remove_position})",
            str(people),
            pair.winner,
        )
    console.print(table)
    return 0


def run_near_misses(settings: Settings, args: argparse.Namespace) -> int:
    """List values that miss a segment narrowly: only through an alias, or by a typo."""
    store = open_store(running_stack_settings(settings), read_only=True)
    try:
        misses = near_misses_of(store, args.segment)
    finally:
        store.close()
    if not misses:
        console.print(f"no value narrowly misses segment {args.segment}")
        return 0
    table = Table(title=f"values that narrowly miss segment {args.segment}")
    for column in ("attribute", "condition", "value", "why", "people"):
        table.add_column(column)
    for miss, people in sorted(misses.items(), key=lambda item: (-item[1], item[0])):
        why = "matches only through an alias"
        if miss.kind == "edit":
            plural = "s" if miss.edits > 1 else ""
            why = f"{miss.edits} edit{plural} from {miss.expected!r}"
        table.add_row(
            miss.attribute,
            f"{miss.operator} {miss.expected!r}",
            repr(miss.value),
            why,
            str(people),
        )
    console.print(table)
    return 0


def run_held(settings: Settings, args: argparse.Namespace) -> int:
    """List config changes held because they would remove too many members."""
    store = open_store(running_stack_settings(settings), read_only=True)
    try:
        with store.transaction() as tx:
            held = tx.held_configs()
            stale = tx.stale_held_configs()
    finally:
        store.close()
    if not held:
        console.print("no config change is held")
        return 0
    table = Table(title="config changes waiting for `mentorflow confirm EVENT_ID`")
    # Event ids are for copying into `mentorflow confirm`: never cut them.
    table.add_column("event id", no_wrap=True, overflow="fold")
    for column in ("held at", "would remove", "can be confirmed"):
        table.add_column(column)
    for event_id, report, held_at in held:
        removals = ", ".join(
            f"{figures['removals']} of {figures['members']} in {program_id}"
            for program_id, figures in report.items()
        )
        confirmable = (
            "no: the configuration changed since; apply it again"
            if event_id in stale
            else "yes"
        )
        table.add_row(
            event_id, held_at.isoformat(timespec="seconds"), removals, confirmable
        )
    console.print(table)
    return 0


def run_confirm(settings: Settings, args: argparse.Namespace) -> int:
    """Confirm a held config change, so that the worker applies it."""
    settings = running_stack_settings(settings)
    store = open_store(settings)
    try:
        with store.transaction() as tx:
            held = [event_id for event_id, _, _ in tx.held_configs()]
        if args.event_id not in held:
            listed = ", ".join(held) or "none"
            raise WorkerError(
                f"no held config change {args.event_id!r}; held now: {listed}"
            )
        confirmation = ConfigConfirmed(
            event_id=new_event_id(), occurred_at=utc_now(), held_event_id=args.event_id
        )
        what = f"held change {args.event_id}"
        return publish_and_report(settings, store, confirmation, what, args.wait_s)
    finally:
        store.close()


def publish_and_report(
    settings: Settings, store: Store, event: ConfigEvent, what: str, wait_s: float
) -> int:
    """Publish a config event, print the worker's verdict; return the exit status."""
    outcome = publish_config(settings, store, event, wait_s)
    console.print(describe_outcome(outcome, event.event_id, what), highlight=False)
    return EXIT_STATUS[outcome.kind]


def run_change(settings: Settings, args: argparse.Namespace) -> int:
    """Publish one membership or rule change and wait for the worker's verdict."""
    event = change_event(args)
    settings = running_stack_settings(settings)
    ensure_topics(settings.kafka)
    store = open_store(settings)
    try:
        # The worker deletes an unknown rule without complaint, which would read
        # as "applied" to an admin who mistyped its id.
        if isinstance(event, RuleDeleted):
            _require_rule(store, event.rule_id)
        return publish_and_report(
            settings, store, event, describe_change(event), args.wait_s
        )
    finally:
        store.close()


def change_event(args: argparse.Namespace) -> ConfigEvent:
    """Build the config event that a `member` or `rule` command publishes."""
    event_id = new_event_id()
    occurred_at = utc_now()
    change = args.change
    if change is ManualMembershipAdded or change is ManualMembershipRemoved:
        membership: ConfigEvent = change(
            event_id=event_id,
            occurred_at=occurred_at,
            program_id=args.program,
            role=args.role,
            person_id=args.person,
        )
        return membership
    if change is RulesReordered:
        return RulesReordered(
            event_id=event_id, occurred_at=occurred_at, rule_ids=args.rule_ids
        )
    if change in (RulePublished, RulePaused, RuleDeleted):
        rule: ConfigEvent = change(
            event_id=event_id, occurred_at=occurred_at, rule_id=args.rule_id
        )
        return rule
    raise WorkerError(
        "expected a membership or rule change to publish, got"
        f" {getattr(change, '__name__', change)!r}"
    )


def describe_change(event: ConfigEvent) -> str:
    """Name a membership or rule change for the admin, as in "applied ..."."""
    if isinstance(event, ManualMembershipAdded):
        return (
            f"the manual addition of {event.person_id} to {event.program_id}"
            f" as {event.role.value}"
        )
    if isinstance(event, ManualMembershipRemoved):
        return (
            f"the manual removal of {event.person_id} from {event.program_id}"
            f" as {event.role.value}"
        )
    if isinstance(event, RulePublished):
        return f"the publication of rule {event.rule_id}"
    if isinstance(event, RulePaused):
        return f"the pause of rule {event.rule_id}"
    if isinstance(event, RuleDeleted):
        return f"the deletion of rule {event.rule_id}"
    if isinstance(event, RulesReordered):
        return f"the dashboard order {', '.join(event.rule_ids)}"
    return f"config event {event.type}"


def _require_rule(store: Store, rule_id: str) -> None:
    with store.transaction() as tx:
        rule_ids = [rule.rule_id for rule in tx.load_rules()]
    if rule_id not in rule_ids:
        listed = ", ".join(rule_ids) or "none"
        raise WorkerError(f"no rule {rule_id!r} to delete; rules now: {listed}")


def add_wait_option(parser: argparse.ArgumentParser) -> None:
    """Add --wait-s: how long to wait for the worker's verdict."""
    parser.add_argument(
        "--wait-s",
        type=_wait_s,
        default=30.0,
        help="seconds to wait for the worker to apply, hold or reject it"
        " (default 30; 0 returns at once)",
    )


def _object_id(text: str) -> str:
    # Caught here, an id the event would refuse is a usage error, not a traceback.
    if not 0 < len(text) <= MAX_ID_LENGTH or "\x00" in text:
        raise argparse.ArgumentTypeError(
            f"expected an id of 1 to {MAX_ID_LENGTH} characters and no NUL, got"
            f" {text[:MAX_ID_LENGTH]!r} ({len(text)} characters)"
        )
    return text


def _wait_s(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    # NaN and infinity are floats too: one never waits, the other never ends.
    if not 0 <= value < 86400:
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds from 0 to below 86400 like 30, got {text!r}"
        )
    return value


def add_admin_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Register the admin commands on the command line."""
    preview = commands.add_parser("preview", help=run_preview.__doc__)
    preview.add_argument("config", type=Path, metavar="CONFIG.yaml")
    preview.set_defaults(run=run_preview)

    conflicts = commands.add_parser("conflicts", help=run_conflicts.__doc__)
    conflicts.set_defaults(run=run_conflicts)

    near = commands.add_parser("near-misses", help=run_near_misses.__doc__)
    near.add_argument("segment", metavar="SEGMENT")
    near.set_defaults(run=run_near_misses)

    commands.add_parser("held", help=run_held.__doc__).set_defaults(run=run_held)

    confirm = commands.add_parser("confirm", help=run_confirm.__doc__)
    confirm.add_argument("event_id", metavar="EVENT_ID")
    add_wait_option(confirm)
    confirm.set_defaults(run=run_confirm)

    add_member_commands(commands)
    add_rule_commands(commands)


def add_member_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Register `member add` and `member remove`: manual memberships."""
    member = commands.add_parser("member", help="add or remove a member by hand")
    member_commands = member.add_subparsers(dest="member_command", required=True)
    for name, change, summary in (
        ("add", ManualMembershipAdded, "add a person to a program role by hand"),
        ("remove", ManualMembershipRemoved, "remove a person from a program role"),
    ):
        command = member_commands.add_parser(name, help=summary)
        command.add_argument("program", type=_object_id, metavar="PROGRAM")
        command.add_argument("person", type=_object_id, metavar="PERSON")
        command.add_argument("--role", type=Role, choices=list(Role), required=True)
        add_wait_option(command)
        command.set_defaults(run=run_change, change=change)


def add_rule_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Register `rule publish`, `pause`, `delete` and `reorder`."""
    rule = commands.add_parser("rule", help="publish, pause, delete or reorder rules")
    rule_commands = rule.add_subparsers(dest="rule_command", required=True)
    for name, change, summary in (
        ("publish", RulePublished, "start running a rule, at its dashboard position"),
        ("pause", RulePaused, "stop running a rule; its members stay"),
        ("delete", RuleDeleted, "delete a rule; its members stay"),
    ):
        command = rule_commands.add_parser(name, help=summary)
        command.add_argument("rule_id", type=_object_id, metavar="RULE_ID")
        add_wait_option(command)
        command.set_defaults(run=run_change, change=change)

    reorder = rule_commands.add_parser(
        "reorder",
        help="give the listed rules dashboard positions 0, 1, 2, ...;"
        " the others follow in their order",
    )
    reorder.add_argument("rule_ids", type=_object_id, nargs="+", metavar="RULE_ID")
    add_wait_option(reorder)
    reorder.set_defaults(run=run_change, change=RulesReordered)


def _people(person_ids: list[str]) -> str:
    shown = ", ".join(person_ids[:SHOWN_PEOPLE])
    hidden = len(person_ids) - SHOWN_PEOPLE
    return f"{shown} and {hidden} more" if hidden > 0 else shown
