"""The tables bench/run prints: figures (every system side by side, the ratio
Outpost / peer), peak RSS per figure, and the targets with met / NOT MET.
Markdown, so a run's output pastes straight into docs/benchmarks.md."""
from dataclasses import dataclass, field

COLUMNS = [("outpost", "Outpost"), ("peer", "peer (distribution)"), ("parent", "parent direct"),
           ("nginx1", "nginx 1 worker"), ("nginxauto", "nginx auto workers")]


def fmt(v, unit: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if unit in ("s",):
        return f"{v:.2f}"
    if unit in ("ms",):
        return f"{v:.1f}"
    return f"{v:.0f}"


@dataclass
class Row:
    figure: str
    unit: str
    better: str                      # "higher" or "lower"
    values: dict
    notes: dict = field(default_factory=dict)   # column -> " (2 non-2xx)" etc.


@dataclass
class Target:
    text: str
    measured: str
    met: bool | None                 # None: could not be measured


class Report:
    def __init__(self):
        self.rows: list[Row] = []
        self.rss: dict[str, dict[str, int]] = {}
        self.targets: list[Target] = []
        self.notes: list[str] = []

    def add(self, figure: str, unit: str, better: str, notes: dict | None = None, **values) -> None:
        self.rows.append(Row(figure, unit, better, values, notes or {}))

    def peak(self, figure: str, column: str, kib: int) -> None:
        cur = self.rss.setdefault(figure, {})
        cur[column] = max(cur.get(column, 0), kib)

    def target(self, text: str, measured: str, met: bool | None) -> None:
        self.targets.append(Target(text, measured, met))

    def render(self) -> str:
        out = ["| figure | unit | " + " | ".join(h for _, h in COLUMNS) + " | Outpost / peer |",
               "| --- | --- |" + " ---: |" * (len(COLUMNS) + 1)]
        for r in self.rows:
            cells = [fmt(r.values.get(k), r.unit) + r.notes.get(k, "") for k, _ in COLUMNS]
            o, p = r.values.get("outpost"), r.values.get("peer")
            ratio = f"{o / p:.2f}" if isinstance(o, (int, float)) and isinstance(p, (int, float)) and p else "-"
            out.append(f"| {r.figure} | {r.unit} ({r.better} is better) | " + " | ".join(cells) + f" | {ratio} |")
        out += ["", "Peak RSS (VmHWM, KiB) of each server during each figure "
                "(nginx: master + workers summed; '-': not part of that figure):", "",
                "| figure | " + " | ".join(h for _, h in COLUMNS) + " |",
                "| --- |" + " ---: |" * len(COLUMNS)]
        for fig, cols in self.rss.items():
            out.append(f"| {fig} | " + " | ".join(str(cols[k]) if k in cols else "-" for k, _ in COLUMNS) + " |")
        out += ["", "Targets (printed, never asserted):", "",
                "| target | measured | |", "| --- | --- | --- |"]
        for t in self.targets:
            verdict = "met" if t.met else ("NOT MET" if t.met is not None else "not measured")
            out.append(f"| {t.text} | {t.measured} | {verdict} |")
        if self.notes:
            out += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(out)
