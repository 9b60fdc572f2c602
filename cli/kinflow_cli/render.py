"""Terminal views of a run tree, drawn with rich.

Small trees are shown whole; a large fan-out is summarised per parent with
counts by phase and its failures listed, as Hatchet's design proposal asks of
"the table of spawned child runs".
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from kinflow_cli.runs import RunNode, counts

PHASE_STYLE = {
    "Pending": "dim", "Running": "cyan", "Waiting": "yellow", "Succeeded": "green",
    "Failed": "bold red", "Cancelled": "magenta",
}
# Beyond this many children, a parent's children are summarised instead of listed.
LIST_LIMIT = 12


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def _label(n: RunNode) -> Text:
    t = Text()
    t.append(n.name, style="bold")
    if n.key:
        t.append(f" [{n.key}]", style="dim")
    t.append(f"  {n.phase}", style=PHASE_STYLE.get(n.phase, ""))
    t.append(f"  {n.tasks_done}/{n.tasks_total} tasks  {_fmt_duration(n.duration())}", style="dim")
    if n.error:
        t.append(f"  {n.error}", style="red")
    return t


def _summary(children: list[RunNode]) -> Text:
    by_phase: dict[str, int] = {}
    for c in children:
        by_phase[c.phase] = by_phase.get(c.phase, 0) + 1
    t = Text(f"{len(children)} children: ")
    for i, (phase, n) in enumerate(sorted(by_phase.items())):
        if i:
            t.append(", ")
        t.append(f"{n} {phase}", style=PHASE_STYLE.get(phase, ""))
    return t


def run_tree(root: RunNode) -> Tree:
    tree = Tree(_label(root))
    _add(tree, root)
    return tree


def _add(branch: Tree, node: RunNode) -> None:
    kids = node.children
    if len(kids) <= LIST_LIMIT:
        for child in kids:
            _add(branch.add(_label(child)), child)
        return
    branch.add(_summary(kids))
    for child in [c for c in kids if c.phase == "Failed"][:LIST_LIMIT]:
        branch.add(_label(child))
    running = [c for c in kids if c.phase in ("Running", "Waiting")]
    for child in running[:3]:
        branch.add(_label(child))


def children_table(root: RunNode, limit: int = 50) -> Table:
    """Hatchet's table of spawned child runs: name, key, phase, duration, attempts."""
    table = Table(title=f"children of {root.name}", show_lines=False)
    for col in ("name", "key", "phase", "duration", "attempts", "error"):
        table.add_column(col)
    kids = root.children
    shown = [c for c in kids if c.phase == "Failed"] + [c for c in kids if c.phase != "Failed"]
    for c in shown[:limit]:
        table.add_row(c.name, c.key or "", Text(c.phase, style=PHASE_STYLE.get(c.phase, "")),
                      _fmt_duration(c.duration()), str(c.attempts), c.error or "")
    if len(kids) > limit:
        table.caption = f"{limit} of {len(kids)} shown (failures first)"
    return table


def totals_line(root: RunNode) -> Text:
    c = counts(root)
    total = sum(c.values())
    t = Text(f"{root.name}: {root.phase}", style=PHASE_STYLE.get(root.phase, ""))
    if total:
        t.append(f"  descendants {total}: ")
        t.append(", ".join(f"{n} {p}" for p, n in sorted(c.items())))
    return t
