"""Commands that help an admin change the configuration safely."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from rich.console import Console
from rich.table import Table

from infra.kafka import make_producer
from infra.settings import Settings
from schemas.common import new_event_id, utc_now
from schemas.config import CONFIG_KEY, ConfigConfirmed
from workers.admin import find_conflicts, near_misses_of, preview_config
from workers.config_file import load_config_file
from workers.publishing import publish_events
from workers.runtime import build_engine, open_store, running_stack_settings

logger = logging.getLogger(__name__)

console = Console()

# How many person ids a table cell lists before it says how many more.
SHOWN_PEOPLE = 8


def run_preview(settings: Settings, args: argparse.Namespace) -> int:
    """Print the adds and removes publishing a config file would cause now."""
    config = load_config_file(args.config)
    settings = running_stack_settings(settings)
    store = open_store(settings)
    try:
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
    return 0


def run_conflicts(settings: Settings, args: argparse.Namespace) -> int:
    """List people matched by both an add and a remove rule of a program role."""
    settings = running_stack_settings(settings)
    store = open_store(settings)
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
    store = open_store(running_stack_settings(settings))
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
    store = open_store(running_stack_settings(settings))
    try:
        with store.transaction() as tx:
            held = tx.held_configs()
    finally:
        store.close()
    if not held:
        console.print("no config change is held")
        return 0
    table = Table(title="config changes waiting for `mentorflow confirm EVENT_ID`")
    for column in ("event id", "held at", "would remove"):
        table.add_column(column)
    for event_id, report, held_at in held:
        removals = ", ".join(
            f"{figures['removals']} of {figures['members']} in {program_id}"
            for program_id, figures in report.items()
        )
        table.add_row(event_id, held_at.isoformat(timespec="seconds"), removals)
    console.print(table)
    return 0


def run_confirm(settings: Settings, args: argparse.Namespace) -> int:
    """Confirm a held config change, so that the worker applies it."""
    settings = running_stack_settings(settings)
    confirmation = ConfigConfirmed(
        event_id=new_event_id(), occurred_at=utc_now(), held_event_id=args.event_id
    )
    producer = make_producer(settings.kafka)
    try:
        publish_events(
            producer, settings.kafka.config_topic, [(CONFIG_KEY, confirmation)]
        )
    finally:
        producer.close()
    console.print(f"confirmed {args.event_id}; the worker applies it next")
    return 0


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
    confirm.set_defaults(run=run_confirm)


def _people(person_ids: list[str]) -> str:
    shown = ", ".join(person_ids[:SHOWN_PEOPLE])
    hidden = len(person_ids) - SHOWN_PEOPLE
    return f"{shown} and {hidden} more" if hidden > 0 else shown
