"""Multi-objective studies, the pure parts: objectives and their directions, constraints, the front.

- :func:`directions_of`: ``hydra.sweeper.direction`` (a word or a list) as a list of words;
- :class:`Constraint` / :func:`parse_constraints`: ``"params_M<=6"`` -> a bound a trial must keep,
  and Optuna's ``constraints_func`` value (<= 0: feasible);
- :func:`non_dominated`: the indices of the points no other point dominates (the Pareto front);
- :func:`front_csv` / :func:`draw_front`: the front as the parent run's ``pareto.csv`` and plot
  (``results.pareto`` draws the README's picture with the same function).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeper.errors import SettingsError

DIRECTIONS = ("maximize", "minimize")
#: what a trial's model costs, measured before it trains (no training needed): see sweeper.trial_measures
PRE_TRAINING = ("params_M", "flops_G", "latency_ms")
FRONT_TAG = "segsweep.pareto"  # "true" on a trial's run on the study's front, "false" off it


def directions_of(direction: Any) -> list[str]:
    """``maximize`` / ``[maximize, minimize]`` -> ``["maximize"]`` / ``["maximize", "minimize"]``."""
    words = [direction] if isinstance(direction, str) or direction is None else list(direction)
    out = [str(w or "maximize").lower() for w in words]
    if not out or any(w not in DIRECTIONS for w in out):
        raise SettingsError(f"hydra.sweeper.direction={direction!r}: use maximize or minimize, or a list of "
                            "them (one per objective): direction=[maximize,minimize]")
    return out


def check_objectives(objectives: Sequence[str] | None, directions: Sequence[str]) -> list[str] | None:
    """The objectives' names (None: the task's value, or its sequence of values), one per direction."""
    if objectives is None:
        return None
    names = [str(o) for o in ([objectives] if isinstance(objectives, str) else objectives)]
    if len(names) != len(directions):
        raise SettingsError(f"hydra.sweeper.objectives={names} names {len(names)} objective(s) for "
                            f"{len(directions)} direction(s) {list(directions)}: give one direction per objective")
    if len(set(names)) != len(names):
        raise SettingsError(f"hydra.sweeper.objectives={names}: an objective is named twice")
    return names


_CONSTRAINT = re.compile(r"^\s*(?P<name>[A-Za-z_][\w./]*)\s*(?P<op><=|>=|<|>)\s*(?P<bound>[-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class Constraint:
    """``name op bound``: a trial whose measured ``name`` breaks it is refused before it trains."""

    name: str
    op: str
    bound: float

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.bound:g}"

    def violation(self, value: float) -> float:
        """Optuna's constraint value: <= 0 when kept, the distance to the bound when broken."""
        if self.op in ("<=", "<"):
            gap = value - self.bound
            return gap if self.op == "<=" or gap != 0 else 1e-12
        gap = self.bound - value
        return gap if self.op == ">=" or gap != 0 else 1e-12

    def kept(self, value: float) -> bool:
        """Whether ``value`` keeps the constraint."""
        return self.violation(value) <= 0


def parse_constraints(specs: Sequence[str] | str | None) -> list[Constraint]:
    """``["params_M<=6", "latency_ms<20"]`` -> constraints on what is measured before training."""
    if not specs:
        return []
    out = []
    for spec in [specs] if isinstance(specs, str) else specs:
        match = _CONSTRAINT.match(str(spec))
        if match is None:
            raise SettingsError(f"hydra.sweeper.constraints: cannot read {spec!r}; write NAME<=NUMBER (or >=, <, >), "
                                """quoted for Hydra: 'hydra.sweeper.constraints=["params_M<=6"]'""")
        if match["name"] not in PRE_TRAINING:
            raise SettingsError(f"hydra.sweeper.constraints: {spec!r} names {match['name']!r}; a constraint refuses "
                                f"a trial before it trains, so it can bound only {', '.join(PRE_TRAINING)}")
        try:
            bound = float(match["bound"])
        except ValueError:
            raise SettingsError(f"hydra.sweeper.constraints: {spec!r}: {match['bound']!r} is not a number") from None
        out.append(Constraint(match["name"], match["op"], bound))
    return out


def broken(constraints: Sequence[Constraint], measured: Mapping[str, float]) -> list[str]:
    """The constraints ``measured`` breaks, each as ``params_M=7.2 breaks params_M<=6`` (one not measured,
    a model that did not build, is not judged here: its job reports why it cannot train)."""
    return [f"{c.name}={measured[c.name]:.4g} breaks {c}" for c in constraints
            if c.name in measured and not c.kept(float(measured[c.name]))]


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    """Whether ``a`` is at least as good as ``b`` in every objective and better in one."""
    signs = [1.0 if d == "maximize" else -1.0 for d in directions]
    better = [s * x > s * y for s, x, y in zip(signs, a, b, strict=True)]
    worse = [s * x < s * y for s, x, y in zip(signs, a, b, strict=True)]
    return any(better) and not any(worse)


def non_dominated(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Indices of the points no other point dominates (points with a NaN are never on the front)."""
    ok = [i for i, p in enumerate(points) if all(math.isfinite(float(v)) for v in p)]
    return [i for i in ok if not any(dominates(points[j], points[i], directions) for j in ok if j != i)]


def front_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """The front (or any trials) as CSV text with ``columns`` in order."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def draw_front(points: Sequence[Mapping[str, Any]], x: str, y: str, directions: Sequence[str], out: Path,
               title: str) -> Path:
    """Every trial as a point of (``x``, ``y``) (``directions``: of x, then of y), the front's points
    highlighted and joined in order of ``x``; ``points`` rows carry ``x``, ``y``, ``front`` (bool) and an
    optional ``label``. Writes a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    rest = [p for p in points if not p.get("front")]
    front = sorted((p for p in points if p.get("front")), key=lambda p: float(p[x]))
    ax.scatter([p[x] for p in rest], [p[y] for p in rest], color="tab:gray", alpha=0.6, label="trial")
    ax.plot([p[x] for p in front], [p[y] for p in front], "o-", color="tab:red", label="Pareto front")
    for p in front:
        if p.get("label"):
            ax.annotate(str(p["label"]), (p[x], p[y]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    arrow = {"maximize": "higher is better", "minimize": "lower is better"}
    ax.set_xlabel(f"{x} ({arrow[_dir(directions, 0)]})")
    ax.set_ylabel(f"{y} ({arrow[_dir(directions, 1)]})")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, metadata={"Software": None})
    return out


def _dir(directions: Sequence[str], i: int) -> str:
    return directions[i] if i < len(directions) else "maximize"
