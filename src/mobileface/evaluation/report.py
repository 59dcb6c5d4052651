"""Reports people want to look at: ROC and DET curves, score histograms, CMC, and a summary.

Plots are PNG files drawn with matplotlib's Agg backend (no display needed), several models per
plot. The summary is Markdown (``summary.md``) and, on request, a self-contained-looking HTML
page (``summary.html``) that shows the same tables and the PNGs beside it.
"""

from __future__ import annotations

import html
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import VerificationMetrics, far_key, roc_curve

_STYLE = ["-", "--", "-.", ":"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


@dataclass
class VerificationEntry:
    """One model's verification run, as the report shows it."""

    label: str
    scores: np.ndarray
    same: np.ndarray
    metrics: VerificationMetrics
    details: dict[str, Any] = field(default_factory=dict)  # failed images, flip, pose bins...


@dataclass
class IdentificationEntry:
    label: str
    metrics: Any  # IdentificationMetrics
    details: dict[str, Any] = field(default_factory=dict)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return _write_atomic(
        path, lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    )


def _write_atomic(path: Path, write: Callable[[str], object]) -> Path:
    """Have ``write`` fill a temporary file beside ``path``, then rename it over ``path``.

    ``mkstemp`` makes its file 0600; a report is meant to be shared, so the file gets the
    permissions any new file would (0666 less the umask: 0644 under the usual 022).
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _umask() -> int:
    """The process's umask (read by setting it and putting it back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def plot_roc(entries: Sequence[VerificationEntry], path: str | Path) -> Path:
    """TAR against FAR (log scale), one curve per model."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    lowest, bottom = 1.0, 1.0
    for i, e in enumerate(entries):
        roc = roc_curve(e.scores, e.same)
        floor = 1.0 / max(1, int((~np.asarray(e.same, bool)).sum()))
        lowest = min(lowest, floor)
        bottom = min(bottom, float(roc.tar[roc.far <= floor].max()))
        far = np.maximum(roc.far, floor / 2)  # FAR 0 drawn at the plot's left edge
        ax.plot(far, roc.tar, ls=_STYLE[i % 4], label=_label(e))
    ax.set_xscale("log")
    ax.set_xlim(lowest / 2, 1.0)
    # Good models crowd the top: start the TAR axis a little below the lowest curve.
    ax.set_ylim(max(0.0, np.floor((bottom - 0.02) * 20) / 20), 1.005)
    ax.set_xlabel("false accept rate (FAR)")
    ax.set_ylabel("true accept rate (TAR)")
    ax.set_title("ROC")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    try:
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def plot_det(entries: Sequence[VerificationEntry], path: str | Path) -> Path:
    """Detection error trade-off: FRR against FAR, both log scale, one curve per model."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    lowest = 1.0
    for i, e in enumerate(entries):
        y = np.asarray(e.same, bool)
        roc = roc_curve(e.scores, y)
        floor = 1.0 / max(1, min(int(y.sum()), int((~y).sum())))
        lowest = min(lowest, floor)
        far = np.maximum(roc.far, floor / 2)
        frr = np.maximum(1.0 - roc.tar, floor / 2)
        ax.plot(far, frr, ls=_STYLE[i % 4], label=_label(e))
    ax.plot([lowest / 2, 1], [lowest / 2, 1], color="grey", lw=0.6, ls=":", label="FAR = FRR")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lowest / 2, 1.0)
    ax.set_ylim(lowest / 2, 1.0)
    ax.set_xlabel("false accept rate (FAR)")
    ax.set_ylabel("false reject rate (FRR)")
    ax.set_title("DET")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    try:
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def plot_histograms(entries: Sequence[VerificationEntry], path: str | Path) -> Path:
    """Score histograms of same and different pairs, one panel per model, best threshold marked."""
    plt = _pyplot()
    n = max(1, len(entries))
    fig, axes = plt.subplots(n, 1, figsize=(6, 2.6 * n), squeeze=False)
    for ax, e in zip(axes[:, 0], entries, strict=False):
        s = np.asarray(e.scores, np.float64)
        y = np.asarray(e.same, bool)
        edges = np.linspace(s.min(), s.max() + 1e-9, 61)
        ax.hist(s[~y], bins=edges, alpha=0.6, density=True, label="different", color="tab:red")
        ax.hist(s[y], bins=edges, alpha=0.6, density=True, label="same", color="tab:blue")
        ax.axvline(e.metrics.threshold, color="black", lw=1, ls="--", label="best threshold")
        ax.set_title(e.label, fontsize=9)
        ax.set_xlabel("cosine similarity")
        ax.legend(fontsize=7)
    fig.tight_layout()
    try:
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def plot_cmc(entries: Sequence[IdentificationEntry], path: str | Path) -> Path:
    """Cumulative match characteristic, one curve per model."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for i, e in enumerate(entries):
        cmc = list(e.metrics.cmc)
        if cmc:
            ax.plot(range(1, len(cmc) + 1), cmc, ls=_STYLE[i % 4], marker=".", label=e.label)
    ax.set_xlabel("rank")
    ax.set_ylabel("identification rate")
    ax.set_title("CMC (closed set)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    try:
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def _label(e: VerificationEntry) -> str:
    return f"{e.label} (EER {100 * e.metrics.eer:.2f}%)"


def _pct(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def verification_table(entries: Sequence[VerificationEntry]) -> tuple[list[str], list[list[str]]]:
    fars = [t.far for t in entries[0].metrics.tar_at_far] if entries else []
    headers = ["model", "accuracy (10-fold)", "AUC", "EER"]
    headers += [f"TAR@FAR={far_key(f)}" for f in fars]
    headers += ["threshold", "pairs", "failed images"]
    rows = []
    for e in entries:
        m = e.metrics
        tars = {t.far: t.tar for t in m.tar_at_far}
        row = [e.label, f"{100 * m.accuracy:.2f} ± {100 * m.accuracy_std:.2f}%"]
        row += [f"{m.auc:.4f}", _pct(m.eer)]
        row += [_pct(tars.get(f)) for f in fars]
        row += [f"{m.threshold:.4f}", f"{m.pairs:,}", str(e.details.get("failed_images", 0))]
        rows.append(row)
    return headers, rows


def _markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def esc(v: str) -> str:
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in headers) + " |"]
    lines.append("|" + "|".join("---" for _ in headers) + "|")
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return lines


def _notes(entries: Sequence[VerificationEntry]) -> list[str]:
    notes = []
    for e in entries:
        for t in e.metrics.tar_at_far:
            if t.reason:
                notes.append(f"{e.label}: TAR at FAR {far_key(t.far)} not reported ({t.reason}).")
        for name, reason in e.details.get("failed", {}).items():
            notes.append(f"{e.label}: {name}: {reason}")
    return notes


def _pose_rows(entries: Sequence[VerificationEntry]) -> list[list[str]]:
    rows = []
    for e in entries:
        pose = e.details.get("pose")
        if not pose:
            continue
        for name, b in pose["bins"].items():
            eer = "n/a" if b["eer"] is None else _pct(b["eer"])
            rows.append([e.label, name, str(b["same_pairs"]), str(b["different_pairs"]), eer])
    return rows


_PLOTS = {"roc": "roc.png", "det": "det.png", "hist": "histograms.png", "cmc": "cmc.png"}


def write_verification_report(
    entries: Sequence[VerificationEntry],
    out_dir: str | Path,
    *,
    title: str = "Verification",
    description: str = "",
    html_page: bool = True,
) -> dict[str, Path]:
    """ROC, DET and histogram PNGs plus ``summary.md`` (and ``summary.html``) in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "roc": plot_roc(entries, out / _PLOTS["roc"]),
        "det": plot_det(entries, out / _PLOTS["det"]),
        "hist": plot_histograms(entries, out / _PLOTS["hist"]),
    }
    headers, rows = verification_table(entries)
    pose_rows = _pose_rows(entries)
    pose_headers = ["model", "pose bin", "same pairs", "different pairs", "EER"]
    notes = _notes(entries)
    md = [f"# {title}", ""]
    if description:
        md += [description, ""]
    md += _markdown_table(headers, rows) + [""]
    md += [
        "Accuracy: LFW protocol (threshold chosen on the other folds, accuracy on each fold; "
        "mean ± standard deviation). AUC, EER, TAR@FAR and the threshold are over all pairs "
        "(accept when the cosine similarity >= threshold).",
        "",
    ]
    if pose_rows:
        md += ["## Pose split", ""] + _markdown_table(pose_headers, pose_rows) + [""]
    md += ["## Curves", "", "![ROC](roc.png)", "", "![DET](det.png)", ""]
    md += ["![score histograms](histograms.png)", ""]
    if notes:
        md += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    files["markdown"] = _write_text(out / "summary.md", "\n".join(md))
    if html_page:
        body = [f"<h1>{html.escape(title)}</h1>"]
        if description:
            body.append(f"<p>{html.escape(description)}</p>")
        body.append(_html_table(headers, rows))
        if pose_rows:
            body += ["<h2>Pose split</h2>", _html_table(pose_headers, pose_rows)]
        body.append("<h2>Curves</h2>")
        body += [f'<img src="{_PLOTS[k]}" alt="{k}">' for k in ("roc", "det", "hist")]
        if notes:
            items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
            body += ["<h2>Notes</h2>", f"<ul>{items}</ul>"]
        files["html"] = _write_text(out / "summary.html", _html_page(title, body))
    return files


def write_identification_report(
    entries: Sequence[IdentificationEntry],
    out_dir: str | Path,
    *,
    title: str = "Identification",
    description: str = "",
    html_page: bool = True,
) -> dict[str, Path]:
    """A CMC plot and ``summary.md`` (and ``summary.html``) for identification runs."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"cmc": plot_cmc(entries, out / _PLOTS["cmc"])}
    fpirs = [t.fpir for t in entries[0].metrics.tpir_at_fpir] if entries else []
    headers = ["model", "rank-1", "rank-5"] + [f"TPIR@FPIR={far_key(f)}" for f in fpirs]
    headers += ["gallery ids", "distractors", "mated probes", "non-mated probes", "failed images"]
    rows = []
    for e in entries:
        m = e.metrics
        tp = {t.fpir: t.tpir for t in m.tpir_at_fpir}
        row = [e.label, _pct(m.rank1), _pct(m.rank5)] + [_pct(tp.get(f)) for f in fpirs]
        row += [f"{m.gallery_identities:,}", f"{m.distractors:,}", f"{m.mated_probes:,}"]
        row += [f"{m.nonmated_probes:,}", str(e.details.get("failed_images", 0))]
        rows.append(row)
    notes = [
        f"{e.label}: TPIR at FPIR {far_key(t.fpir)} not reported ({t.reason})."
        for e in entries
        for t in e.metrics.tpir_at_fpir
        if t.reason
    ]
    md = [f"# {title}", ""] + ([description, ""] if description else [])
    md += _markdown_table(headers, rows) + ["", "![CMC](cmc.png)", ""]
    if notes:
        md += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    files["markdown"] = _write_text(out / "summary.md", "\n".join(md))
    if html_page:
        body = [f"<h1>{html.escape(title)}</h1>"]
        if description:
            body.append(f"<p>{html.escape(description)}</p>")
        body += [_html_table(headers, rows), '<img src="cmc.png" alt="CMC">']
        if notes:
            body.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
        files["html"] = _write_text(out / "summary.html", _html_page(title, body))
    return files


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_page(title: str, body: Sequence[str]) -> str:
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}"
        "td{text-align:right}td:first-child{text-align:left}img{max-width:100%;margin:1em 0}"
    )
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _write_text(path: Path, text: str) -> Path:
    return _write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
