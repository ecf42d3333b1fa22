"""A self-contained HTML report of anomaly scores and heat-map overlays.

The report is one ``index.html`` with relative links to thumbnail and overlay
images next to it, a small inline script to sort the table by clicking its
headers, and no external resources: it opens from disk, with no server.
"""

import html
import math
from collections.abc import Mapping
from numbers import Real
from pathlib import Path
from urllib.parse import quote

import numpy as np

from ._files import atomic_write

__all__ = ["color_scale", "score_histogram", "write_report"]

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; }
p.meta { color: #555; margin: 0.2em 0; }
table { border-collapse: collapse; margin-top: 1em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; vertical-align: middle; }
th { background: #f0f0f0; cursor: pointer; user-select: none; white-space: nowrap;
     position: sticky; top: 0; z-index: 1; }
th.nosort { cursor: default; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.path { font-family: ui-monospace, monospace; font-size: 0.9em; overflow-wrap: anywhere; min-width: 12em; max-width: 28em; }
tr.anomalous { background: #ffe3e0; }
tr.anomalous td.label { color: #b00020; font-weight: bold; }
img { display: block; max-width: 160px; max-height: 160px; }
svg.levels { display: block; }
svg.histogram { display: block; margin-top: 0.8em; font-size: 12px; }
svg.colorscale { display: block; margin-top: 0.6em; font-size: 12px; }
span.level { font-size: 0.85em; color: #555; white-space: nowrap; }
span.none { color: #595959; font-size: 0.85em; }
#load-status.failed { color: #b00020; font-weight: bold; }
"""

# Sorts the table by a clicked header (numbers by data-value) and records on
# <body> how many images loaded: data-images="loaded/total", and
# data-images-failed, once every image has finished (used by the tests; a
# visible warning appears if any image is missing).
_JS = """
(function () {
  var table = document.getElementById("scores");
  var headers = table.tHead.rows[0].cells;
  function key(row, col, numeric) {
    var cell = row.cells[col];
    var v = cell.getAttribute("data-value");
    if (v === null) { v = cell.textContent; }
    return numeric ? parseFloat(v) : v.toLowerCase();
  }
  Array.prototype.forEach.call(headers, function (th, col) {
    if (th.classList.contains("nosort")) { return; }
    // Sortable from the keyboard too: Tab to a header, Enter or Space.
    th.tabIndex = 0;
    th.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); th.click(); }
    });
    th.addEventListener("click", function () {
      var numeric = th.getAttribute("data-type") === "number";
      var asc = th.getAttribute("aria-sort") !== "ascending";
      Array.prototype.forEach.call(headers, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = key(a, col, numeric), y = key(b, col, numeric);
        if (x < y) { return asc ? -1 : 1; }
        if (x > y) { return asc ? 1 : -1; }
        return 0;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
  var images = Array.prototype.slice.call(document.images);
  var done = 0, failed = [];
  function finish() {
    done += 1;
    if (done < images.length) { return; }
    document.body.setAttribute("data-images", (images.length - failed.length) + "/" + images.length);
    document.body.setAttribute("data-images-failed", failed.join(" "));
    if (failed.length) {
      var s = document.getElementById("load-status");
      s.className = "failed";
      s.textContent = failed.length + " image(s) could not be loaded: " + failed.join(", ");
    }
  }
  if (!images.length) { done = -1; finish(); return; }
  images.forEach(function (img) {
    function ok() { if (img.naturalWidth > 0) { finish(); } else { failed.push(img.getAttribute("src")); finish(); } }
    function bad() { failed.push(img.getAttribute("src")); finish(); }
    if (img.complete) { ok(); } else {
      img.addEventListener("load", ok);
      img.addEventListener("error", bad);
    }
  });
})();
"""


def _fmt(value):
    return "" if value is None or not math.isfinite(value) else f"{value:.4g}"


def _img(src, alt, note=None):
    if not src:
        return f'<span class="none">{html.escape(note) if note else "&mdash;"}</span>'
    url = html.escape(quote(src), quote=True)
    alt = html.escape(alt, quote=True)
    return f'<a href="{url}"><img src="{url}" alt="{alt}"></a>'


# The level bars: one bar per level, this wide and tall in pixels, with
# room below the baseline for values under 0 (a level more normal than usual).
_BAR_WIDTH, _BAR_GAP, _BAR_HEIGHT, _BAR_BELOW = 7, 2, 36, 8


def _level_bars(levels, top):
    """An inline SVG of one bar per ``(name, value)`` of ``levels`` on the
    scale ``[.., top]``, the largest value in red, and its name under it."""
    values = [value for _, value in levels]
    largest = max(range(len(values)), key=values.__getitem__)
    scale = (_BAR_HEIGHT - _BAR_BELOW) / top
    width = len(values) * (_BAR_WIDTH + _BAR_GAP)
    bars = []
    for i, (name, value) in enumerate(levels):
        x = i * (_BAR_WIDTH + _BAR_GAP)
        extent = max(-_BAR_BELOW, min(value * scale, _BAR_HEIGHT - _BAR_BELOW))
        y = _BAR_HEIGHT - _BAR_BELOW - max(extent, 0)
        color = "#b00020" if i == largest else "#8a8a8a"
        bars.append(
            f'<rect x="{x}" y="{y:.1f}" width="{_BAR_WIDTH}" height="{max(abs(extent), 0.5):.1f}" '
            f'fill="{color}"><title>{html.escape(name)}: {_fmt(value)}</title></rect>'
        )
    base = _BAR_HEIGHT - _BAR_BELOW
    label = html.escape(", ".join(f"{n} {_fmt(v)}" for n, v in levels))
    return (
        f'<svg class="levels" width="{width}" height="{_BAR_HEIGHT}" role="img" '
        f'aria-label="{label}"><line x1="0" y1="{base}" x2="{width}" y2="{base}" '
        f'stroke="#ccc"/>{"".join(bars)}</svg>'
        f'<span class="level">{html.escape(levels[largest][0])} {_fmt(values[largest])}</span>'
    )


# The score histogram: plot area and margins in pixels (the legend to the
# right of the plot, where no bar reaches), and bins.
_HIST_WIDTH, _HIST_HEIGHT, _HIST_LEFT, _HIST_BOTTOM, _HIST_TOP = 560, 150, 10, 34, 22
_HIST_LEGEND = 170
_HIST_BINS = 30


def score_histogram(groups, threshold):
    """An inline SVG histogram of anomaly scores: one semi-transparent
    colour per group, on shared bins, with the threshold as a dashed line.

    Parameters
    ----------
    groups : list of (str, array-like, str)
        ``(name, anomaly scores, CSS colour)`` per group, at least one;
        non-finite scores are left out.
    threshold : float
        The anomaly-score threshold: images above it are flagged. Finite:
        the axis spans it.

    Returns
    -------
    svg : str

    Raises
    ------
    TypeError
        If ``threshold`` is not a number.
    ValueError
        If ``threshold`` is not finite, or ``groups`` is empty or holds
        something other than ``(str, scores, str)``.
    """
    check_finite_number("threshold", threshold)
    if not groups:
        raise ValueError("groups is empty: give at least one (name, scores, colour).")
    for group in groups:
        if not (len(group) == 3 and isinstance(group[0], str) and isinstance(group[2], str)):
            raise ValueError(
                f"each group must be (name, scores, colour) with str name and colour; got {group!r}."
            )
    groups = [(n, np.asarray(v, float), html.escape(c, quote=True)) for n, v, c in groups]
    groups = [(n, v[np.isfinite(v)], c) for n, v, c in groups]
    values = np.concatenate([v for _, v, _ in groups] + [[threshold]])
    low, high = float(values.min()), float(values.max())
    edges = np.linspace(low, high if high > low else low + 1.0, _HIST_BINS + 1)
    label = html.escape(
        "Histogram of anomaly scores: "
        + ", ".join(f"{n} ({len(v)} images)" for n, v, _ in groups)
        + f"; threshold {_fmt(threshold)}",
        quote=True,
    )
    width, height = _HIST_LEFT * 2 + _HIST_WIDTH + _HIST_LEGEND, _HIST_HEIGHT + _HIST_BOTTOM
    return (
        f'<svg class="histogram" width="{width}" height="{height}" role="img" '
        f'aria-label="{label}">{_histogram_bars(groups, edges)}'
        f"{_histogram_axis(edges, threshold)}{_histogram_legend(groups)}</svg>"
    )


def _histogram_bars(groups, edges):
    """Each group's bars, on one height scale."""
    counts = [np.histogram(v, edges)[0] for _, v, _ in groups]
    tallest = max(1, *(int(c.max(initial=0)) for c in counts))
    bar = _HIST_WIDTH / _HIST_BINS
    parts = []
    for (name, _, color), count in zip(groups, counts):
        for b in np.flatnonzero(count):
            height = count[b] / tallest * (_HIST_HEIGHT - _HIST_TOP)
            parts.append(
                f'<rect x="{_HIST_LEFT + b * bar:.1f}" y="{_HIST_HEIGHT - height:.1f}" '
                f'width="{bar:.1f}" height="{height:.1f}" fill="{color}" fill-opacity="0.55">'
                f"<title>{html.escape(name)}: {count[b]} image(s) between "
                f"{_fmt(edges[b])} and {_fmt(edges[b + 1])}</title></rect>"
            )
    return "".join(parts)


def _histogram_axis(edges, threshold):
    """The score axis with its ends, and the threshold's dashed line."""
    low, high, base = edges[0], edges[-1], _HIST_HEIGHT
    x = _HIST_LEFT + (threshold - low) / (high - low) * _HIST_WIDTH
    right, middle = _HIST_LEFT + _HIST_WIDTH, _HIST_LEFT + _HIST_WIDTH / 2
    return (
        f'<line x1="{x:.1f}" y1="{_HIST_TOP - 14}" x2="{x:.1f}" y2="{base}" '
        'stroke="#222" stroke-dasharray="4 3"/>'
        f'<text x="{x + 4:.1f}" y="{_HIST_TOP - 4}">threshold {_fmt(threshold)}</text>'
        f'<line x1="{_HIST_LEFT}" y1="{base}" x2="{right}" y2="{base}" stroke="#888"/>'
        f'<text x="{_HIST_LEFT}" y="{base + 14}">{_fmt(low)}</text>'
        f'<text x="{right}" y="{base + 14}" text-anchor="end">{_fmt(high)}</text>'
        f'<text x="{middle}" y="{base + 28}" text-anchor="middle">anomaly score</text>'
    )


def _histogram_legend(groups):
    """One swatch per group, with its name and number of images."""
    left = _HIST_LEFT * 2 + _HIST_WIDTH
    return "".join(
        f'<rect x="{left}" y="{_HIST_TOP + 14 * i}" width="10" height="10" fill="{color}" '
        f'fill-opacity="0.55"/><text x="{left + 14}" y="{_HIST_TOP + 9 + 14 * i}">'
        f"{html.escape(name)} ({len(v)})</text>"
        for i, (name, v, color) in enumerate(groups)
    )


# The heat maps' colour bar: its left margin, size and label rows in
# pixels, and the stops of its gradient (the colormap is piecewise linear,
# so a few dozen stops draw it).
_BAR_LEFT, _BAR_WIDTH, _BAR_HEIGHT, _BAR_TOP, _BAR_STOPS = 10, 320, 14, 18, 33


def color_scale(low, high, threshold=None):
    """An inline SVG colour bar of heat maps drawn on one scale: the default
    colormap (:func:`~skanomaly.plotting.jet`) from ``low`` to ``high``, as
    :func:`~skanomaly.plotting.overlay_heatmap` draws with ``vmin=low`` and
    ``vmax=high``, with the pixel ``threshold`` marked where given.

    Parameters
    ----------
    low, high : float
        The map values drawn as the colormap's ends, ``low < high``.
    threshold : float, default=None
        The pixel threshold: regions above it are outlined. Outside the
        scale it is marked at the end it lies beyond.

    Returns
    -------
    svg : str

    Raises
    ------
    TypeError
        If ``low``, ``high`` or a given ``threshold`` is not a number.
    ValueError
        If one of them is not finite, or ``low`` is not below ``high``.
    """
    for name, value in (("low", low), ("high", high), ("threshold", threshold)):
        if value is not None or name != "threshold":
            check_finite_number(name, value)
    if not low < high:
        raise ValueError(f"low must be below high; got {low!r} and {high!r}.")
    # Plotting imports scipy, which `skanomaly --help` need not wait for.
    from .plotting import jet

    colors = np.round(jet(np.linspace(0.0, 1.0, _BAR_STOPS)) * 255).astype(int)
    stops = "".join(
        f'<stop offset="{i / (_BAR_STOPS - 1):.4f}" stop-color="#{r:02x}{g:02x}{b:02x}"/>'
        for i, (r, g, b) in enumerate(colors)
    )
    right, base = _BAR_LEFT + _BAR_WIDTH, _BAR_TOP + _BAR_HEIGHT
    label = f"Heat-map colours from {_fmt(low)} to {_fmt(high)}"
    parts = [
        f'<defs><linearGradient id="heat-map-colors">{stops}</linearGradient></defs>',
        f'<rect x="{_BAR_LEFT}" y="{_BAR_TOP}" width="{_BAR_WIDTH}" height="{_BAR_HEIGHT}" '
        'fill="url(#heat-map-colors)" stroke="#888"/>',
        f'<text x="{_BAR_LEFT}" y="{base + 14}">{_fmt(low)}</text>',
        f'<text x="{right}" y="{base + 14}" text-anchor="end">{_fmt(high)}</text>',
        f'<text x="{right + 8}" y="{base - 3}">heat-map colours (pixel anomaly score)</text>',
    ]
    if threshold is not None:
        share = min(max((threshold - low) / (high - low), 0.0), 1.0)
        x = _BAR_LEFT + share * _BAR_WIDTH
        beyond = " (above the scale)" if threshold > high else ""
        beyond = " (below the scale)" if threshold < low else beyond
        anchor = "start" if share < 0.25 else "end" if share > 0.75 else "middle"
        parts.append(
            f'<line x1="{x:.1f}" y1="{_BAR_TOP - 4}" x2="{x:.1f}" y2="{base + 4}" '
            'stroke="#222" stroke-width="2"/>'
            f'<text x="{x:.1f}" y="{_BAR_TOP - 7}" text-anchor="{anchor}">'
            f"pixel threshold {_fmt(threshold)}{beyond}</text>"
        )
        label += f"; pixel threshold {_fmt(threshold)}{beyond}"
    width, height = right + 260, base + 20
    return (
        f'<svg class="colorscale" width="{width}" height="{height}" role="img" '
        f'aria-label="{html.escape(label, quote=True)}">{"".join(parts)}</svg>'
    )


def check_finite_number(name, value):
    """Refuse ``value`` unless it is a finite real number (not a bool):
    TypeError for another type, ValueError for NaN or infinity. The one
    check of the numbers that the report and the overlays take."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number; got {type(value).__name__}.")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value!r}.")


# The keys every record of write_report needs, and the labels it knows.
_RECORD_KEYS = ("path", "score", "anomaly_score", "decision", "label")
_LABELS = ("normal", "anomalous")


def _check_records(records):
    """Refuse ``records`` unless each is a dict with the keys and values
    that :func:`write_report` reads, naming the first record that is not."""
    if not isinstance(records, (list, tuple)):
        raise TypeError(f"records must be a list of dicts; got {type(records).__name__}.")
    for i, r in enumerate(records):
        if not isinstance(r, Mapping):
            raise TypeError(f"records[{i}] must be a dict; got {type(r).__name__}.")
        missing = [key for key in _RECORD_KEYS if key not in r]
        if missing:
            raise ValueError(f"records[{i}] lacks the key(s) {', '.join(missing)}.")
        if not isinstance(r["path"], str):
            raise TypeError(f"records[{i}]['path'] must be a str; got {type(r['path']).__name__}.")
        for key in ("score", "anomaly_score", "decision"):
            if isinstance(r[key], bool) or not isinstance(r[key], Real):
                raise TypeError(
                    f"records[{i}][{key!r}] must be a number; got {type(r[key]).__name__}."
                )
        if r["label"] not in _LABELS:
            raise ValueError(
                f"records[{i}]['label'] must be 'normal' or 'anomalous'; got {r['label']!r}."
            )
        for level in r.get("levels") or ():
            if not (len(level) == 2 and isinstance(level[1], Real) and math.isfinite(level[1])):
                raise ValueError(
                    f"records[{i}]['levels'] must hold (name, finite number) pairs; got {level!r}."
                )


def _number(value):
    """``value`` as the page's script reads it back with ``parseFloat``:
    every digit of a Python or numpy float (whose repr would read
    ``np.float64(...)``), infinities spelled as JavaScript spells them."""
    value = float(value)
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def _count(value):
    """A number cell that sorts below 0 when empty (an image not explained)."""
    if value is None:
        return '<td class="num" data-value="-1"></td>'
    return f'<td class="num" data-value="{value}">{value}</td>'


def write_report(out_dir, records, threshold, title="skanomaly report", notes=None, figure=None):
    """Write ``out_dir/index.html`` listing ``records``.

    Parameters
    ----------
    out_dir : str or path-like
        Existing folder; image links in ``records`` are relative to it.
    records : list of dict
        One per image, with keys ``path`` (shown, escaped), ``score``,
        ``anomaly_score``, ``decision``, ``label`` ("normal" or "anomalous"),
        and optionally ``thumbnail`` and ``overlay`` (relative paths of image
        files, or None), ``overlay_note`` (shown instead of a missing overlay,
        saying why it is missing), ``truth`` (a ground-truth label, shown in an extra
        column when any record has one), ``regions`` and ``defect_area``
        (the number of anomalous regions of an explained image and their
        area in pixels, or None) and ``levels`` (a list of ``(name, value)``,
        one per level, drawn as a small bar chart: what each level adds to
        the score). Each of these columns shows when any record has it.
    threshold : float
        The anomaly-score threshold: images above it are anomalous.
    title : str, default="skanomaly report"
        Page title and heading.
    notes : str or list of str, default=None
        Text under the heading, one paragraph per string.
    figure : str, default=None
        Markup (such as :func:`score_histogram`'s SVG) shown above the table.

    Returns
    -------
    path : pathlib.Path
        The written ``index.html``, which replaces the previous one only
        once it is complete.

    Raises
    ------
    FileNotFoundError
        If ``out_dir`` is not an existing folder.
    TypeError
        If ``records`` is not a list of dicts, or a record's ``path`` is not
        a str, its scores or ``threshold`` not numbers.
    ValueError
        If a record lacks a key named above as required, its ``label`` is
        neither "normal" nor "anomalous", its ``levels`` are not (name,
        finite number) pairs, or ``threshold`` is not finite.
    """
    _check_records(records)
    check_finite_number("threshold", threshold)
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise FileNotFoundError(f"out_dir {str(out_dir)!r} is not an existing folder.")
    has_truth = any(r.get("truth") is not None for r in records)
    n_bad = sum(r["label"] == "anomalous" for r in records)
    n_maps = sum(bool(r.get("overlay")) for r in records)
    head = [
        ("#", "number"),
        ("Image", None),
        ("Heat map", None),
        ("File", "text"),
        ("Anomaly score", "number"),
        ("Decision", "number"),
        ("Label", "text"),
    ]
    has_regions = any(r.get("regions") is not None for r in records)
    has_levels = any(r.get("levels") for r in records)
    if has_regions:
        head += [("Regions", "number"), ("Area (px)", "number")]
    if has_levels:
        head.append(("Levels", "number"))
        # One scale for every row, so that bars compare across images.
        top = max(max(v for _, v in r["levels"]) for r in records if r.get("levels"))
        top = top if top > 0 else 1.0
    if has_truth:
        head.append(("Ground truth", "text"))
    cells = []
    for name, kind in head:
        if kind is None:
            cells.append(f'<th class="nosort">{html.escape(name)}</th>')
        else:
            sort = ' aria-sort="descending"' if name == "Anomaly score" else ""
            cells.append(f'<th data-type="{kind}"{sort}>{html.escape(name)}</th>')
    # Most anomalous first; the original order stays available in column #.
    order = sorted(
        range(len(records)),
        key=lambda i: (
            -records[i]["anomaly_score"] if math.isfinite(records[i]["anomaly_score"]) else math.inf
        ),
    )
    body = []
    for i in order:
        r = records[i]
        label = r["label"]
        row = [
            f'<td class="num" data-value="{i + 1}">{i + 1}</td>',
            f"<td>{_img(r.get('thumbnail'), r['path'])}</td>",
            f"<td>{_img(r.get('overlay'), 'heat map of ' + r['path'], r.get('overlay_note'))}</td>",
            f'<td class="path">{html.escape(r["path"])}</td>',
            f'<td class="num" data-value="{_number(r["anomaly_score"])}">{_fmt(r["anomaly_score"])}</td>',
            f'<td class="num" data-value="{_number(r["decision"])}">{_fmt(r["decision"])}</td>',
            f'<td class="label">{html.escape(label)}</td>',
        ]
        if has_regions:
            row += [_count(r.get("regions")), _count(r.get("defect_area"))]
        if has_levels:
            levels = r.get("levels")
            if levels:
                row.append(
                    f'<td data-value="{_number(max(v for _, v in levels))}">'
                    f"{_level_bars(levels, top)}</td>"
                )
            else:
                row.append('<td data-value="-Infinity"></td>')
        if has_truth:
            row.append(f"<td>{html.escape(str(r.get('truth') or ''))}</td>")
        cls = ' class="anomalous"' if label == "anomalous" else ""
        body.append(f"<tr{cls}>{''.join(row)}</tr>")
    meta = [
        f"{len(records)} image(s), <b>{n_bad} anomalous</b> (anomaly score above the "
        f"threshold <b>{_fmt(threshold)}</b>, i.e. negative decision); "
        f"{n_maps} heat map(s). Click a column header to sort.",
    ]
    if notes:
        meta += [html.escape(n) for n in ([notes] if isinstance(notes, str) else notes)]
    if (out_dir / "scores.csv").is_file():
        meta.append('Every score as CSV: <a href="scores.csv">scores.csv</a>.')
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>{_CSS}</style>
</head>
<body data-threshold="{_number(threshold)}">
<h1>{html.escape(title)}</h1>
{"".join(f'<p class="meta">{m}</p>' for m in meta)}
{figure or ""}
<p id="load-status"></p>
<table id="scores">
<thead><tr>{"".join(cells)}</tr></thead>
<tbody>
{chr(10).join(body)}
</tbody>
</table>
<script>{_JS}</script>
</body>
</html>
"""
    path = out_dir / "index.html"
    # A file name that is not UTF-8 is written as its bytes, which a browser
    # shows with a replacement character, rather than failing the page.
    with atomic_write(path, "w", encoding="utf-8", errors="surrogateescape") as handle:
        handle.write(page)
    return path
