"""Admin aids: what a config would change, and where dashboard order decides."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date

from infra.store import Store
from rules.conflicts import RulePair, count_conflicts
from rules.near_misses import NearMiss, find_near_misses
from rules.ruleset import Pair
from schemas.membership import MembershipAction
from workers.config_file import ConfigFile
from workers.engine import Engine
from workers.errors import WorkerError


@dataclass
class PairPreview:
    """The people a config would add to and remove from one program role."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def preview_config(engine: Engine, config: ConfigFile) -> dict[Pair, PairPreview]:
    """Return, by program role, the exact changes publishing config would make now."""
    previews: dict[Pair, PairPreview] = defaultdict(PairPreview)
    for decision in engine.preview_config(config.to_event()):
        preview = previews[(decision.program_id, decision.role)]
        if decision.action is MembershipAction.ADDED:
            preview.added.append(decision.person_id)
        else:
            preview.removed.append(decision.person_id)
    return dict(sorted(previews.items()))


def near_misses_of(store: Store, segment_id: str) -> Counter[NearMiss]:
    """Count the values of active people that narrowly miss a segment.

    Raises WorkerError when the segment is unknown.
    """
    with store.transaction() as tx:
        segment = next(
            (s for s in tx.load_segments() if s.segment_id == segment_id), None
        )
        if segment is None:
            raise WorkerError(f"unknown segment {segment_id!r}")
        counts: Counter[NearMiss] = Counter()
        for chunk in tx.iter_persons():
            active = (person.attributes for person in chunk if person.is_active)
            counts.update(find_near_misses(segment, active))
    return counts


def find_conflicts(store: Store, today: date) -> Counter[RulePair]:
    """Count the active people both an add and a remove rule of a pair match."""
    with store.transaction() as tx:
        ruleset = tx.load_ruleset()
        counts: Counter[RulePair] = Counter()
        for chunk in tx.iter_persons():
            active = (person.attributes for person in chunk if person.is_active)
            counts.update(count_conflicts(ruleset, active, today))
    return counts
