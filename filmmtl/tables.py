"""The paper's Table 2 beside ours: cells from ``evaluate`` scores (with their 95% intervals where measured),
the paper's numbers read from data/paper_table2.csv, written as CSV and Markdown.

Two sets of columns: ``COLUMNS``, the compared networks trained with the paper's recipe, and
``DESIGN_COLUMNS``, the same networks trained with experiment 1's design and recipe (recipes NAME_design;
its Proposed is notebook 02's network).
"""
import csv
from pathlib import Path

from filmmtl.intervals import ranks_with_ties

COLUMNS = {"proposed_compared": "Proposed", "encin": "EncIN", "sgn": "SGN", "sgn_bias": "SGN+bias",
           "piggyback1": "Piggyback1", "piggyback2": "Piggyback2", "single": "Single", "sharedenc": "SharedEnc"}
DESIGN_COLUMNS = {"proposed": "Proposed", **{f"{recipe}_design": column for recipe, column in COLUMNS.items()
                                             if recipe != "proposed_compared"}}
UNCHANGED = "input unchanged"


def paper_table():
    """The paper's Table 2 as {(row, metric): {column: value or None}} (data/paper_table2.csv)."""
    from filmmtl.data import REPO_DATA
    with open(REPO_DATA / "paper_table2.csv") as f:
        rows = list(csv.DictReader(f))
    return {(r["row"], r["metric"]): {"direction": r["direction"],
                                      **{c: (float(r[c]) if r[c] else None) for c in COLUMNS.values()}}
            for r in rows}


def table2(results, sizes, provenance, columns=COLUMNS):
    """Rows of Table 2 from {recipe: evaluate(...) output} and {recipe: parameter count}, one column per
    recipe of ``columns`` ({recipe: the paper's column name}).

    Our PSNR is in dB; the paper's column headed PSNR holds values between 2 and 11 that are not dB
    (shown as printed). FID cells read "unavailable" without Inception weights, "-" where not computed.
    """
    metric_key = {"PSNR": "psnr", "SSIM": "ssim", "IoU": "iou", "FID": "fid"}
    rows = []
    for (row, metric), paper in paper_table().items():
        entry = {"row": row, "metric": metric, "direction": paper["direction"]}
        job = row.split("_", 1)[1]
        for recipe, column in columns.items():
            interval = results.get(recipe, {}).get("intervals", {}).get(job, {}).get(metric_key.get(metric))
            if metric == "parameters":
                ours = sizes.get(recipe)
            elif interval:  # the value over the degradation seeds, with its 95% interval
                ours = interval[0]
                entry[column + " (95%)"] = interval[1:]
            else:
                ours = results.get(recipe, {}).get(job, {}).get(metric_key[metric])
                if metric == "FID" and ours is None and recipe in results and job in results[recipe]:
                    ours = "unavailable" if provenance.get("fid_network") == "unavailable" else "-"
            entry[column] = ours
            entry[column + " (paper)"] = paper[column]
        # The trivial answer (the degraded input returned unchanged): what every network must beat.
        inputs = [r[job].get(f"input_{metric_key[metric]}") for r in results.values()
                  if metric != "parameters" and job in r]
        entry[UNCHANGED] = inputs[0] if inputs else None
        rows.append(entry)
    return rows


def proposed_ranks(rows, columns=COLUMNS):
    """Proposed's rank on every row of ``table2`` whose cells carry 95% intervals, overlapping intervals tied
    (``ranks_with_ties``): ([(row, metric, rank, networks ranked)], [rows with values but no interval]).
    A mix row ranks only the networks that mix: the others have no cell there."""
    ranks, unranked = [], []
    for row in rows:
        if row["metric"] == "parameters":
            continue
        cells = {c: (row[c], *row[c + " (95%)"]) for c in columns.values() if row.get(c + " (95%)")}
        if "Proposed" not in cells:
            unranked += [f"{row['row']} {row['metric']}"] if isinstance(row.get("Proposed"), (int, float)) else []
            continue
        rank = ranks_with_ties(cells, lower_is_better=row["direction"] == "lower")["Proposed"]
        ranks.append((row["row"], row["metric"], rank, len(cells)))
    return ranks, unranked


def format_cell(value):
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if float(value).is_integer() and abs(value) > 1000:
        return f"{int(value):,}"
    return f"{value:.4g}"


def write_table2(rows, folder, provenance, columns=COLUMNS, name="table2"):
    """Save Table 2 as ``name``.csv and ``name``.md (ours, with the paper's number beside it), provenance
    first; returns the Markdown."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    line = "provenance: " + ", ".join(f"{k}={v}" for k, v in provenance.items())
    with open(folder / f"{name}.csv", "w", newline="") as f:
        f.write(f"# {line}\n")
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    header = "| row | metric | " + " | ".join(columns.values()) + f" | {UNCHANGED} |"
    lines = [line, "", "Each cell: ours [95% interval, where measured] (paper). Our PSNR is in dB; the paper's PSNR "
             f"column is shown as printed. {UNCHANGED}: the score of the degraded input itself (ours only).",
             "", header, "|" + "---|" * (len(columns) + 3)]
    for r in rows:
        cells = [format_cell(r[c]) + (" [{}, {}]".format(*map(format_cell, r[c + " (95%)"])) if r.get(c + " (95%)")
                                      else "") + (f" ({format_cell(r[c + ' (paper)'])})"
                                                  if r[c + " (paper)"] is not None else "")
                 for c in columns.values()]
        lines.append(f"| {r['row']} | {r['metric']} | " + " | ".join(cells + [format_cell(r[UNCHANGED])]) + " |")
    (folder / f"{name}.md").write_text("\n".join(lines) + "\n")
    return "\n".join(lines)
