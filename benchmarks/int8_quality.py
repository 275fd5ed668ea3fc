"""Validation quality of every model on pretrained features, fp32 vs int8 encoders, the same splits and seeds.

Trains (or, with --summarise-only, reads) ``OUT/<precision>-s<seed>/`` with ``movie-genres train --model LIST``
for each precision and seed, then prints, per model, the mean (over seeds) validation micro-F1 and macro-F1 at each
precision and the int8 - fp32 difference. The original CNN / BiLSTM read no encoder, so they are left out.

    .venv/bin/python benchmarks/int8_quality.py --out runs/int8-eval --seeds 42,1,2
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

MODELS = "text,image,early,gmu,late,ensemble"


def summarise(out: Path, seeds: list[int], models: list[str]) -> dict:
    table = {}
    for model in models:
        row = {}
        both = [s for s in seeds if all((out / f"{p}-s{s}" / model / "metrics.json").is_file() for p in ("fp32", "int8"))]
        for precision in ("fp32", "int8"):
            scores = []
            for seed in both or seeds:  # the seeds both precisions have (a like-for-like mean)
                path = out / f"{precision}-s{seed}" / model / "metrics.json"
                if path.is_file():
                    tuned = json.loads(path.read_text())["tuned"]
                    scores.append((tuned["micro_f1"], tuned["macro_f1"]))
            if scores:
                row[precision] = {"seeds": len(scores), "micro_f1": statistics.mean(s[0] for s in scores),
                                  "macro_f1": statistics.mean(s[1] for s in scores),
                                  "micro_f1_by_seed": [round(s[0], 4) for s in scores],
                                  "macro_f1_by_seed": [round(s[1], 4) for s in scores]}
        if "fp32" in row and "int8" in row:
            row["delta_micro_f1"] = row["int8"]["micro_f1"] - row["fp32"]["micro_f1"]
            row["delta_macro_f1"] = row["int8"]["macro_f1"] - row["fp32"]["macro_f1"]
        table[model] = row
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/int8-eval")
    ap.add_argument("--data", default="../shared/data/multimodal-imdb")
    ap.add_argument("--seeds", default="42,1,2")
    ap.add_argument("--models", default=MODELS)
    ap.add_argument("--precisions", default="fp32,int8")
    ap.add_argument("--summarise-only", action="store_true")
    ap.add_argument("extra", nargs="*", help="key=value for every run (e.g. image_encoders=effnet-lite0)")
    args = ap.parse_args()
    out, seeds, models = Path(args.out), [int(s) for s in args.seeds.split(",")], args.models.split(",")
    if not args.summarise_only:
        cli = str(Path(sys.executable).with_name("movie-genres"))
        for seed in seeds:
            for precision in args.precisions.split(","):
                run = out / f"{precision}-s{seed}"
                if (run / "best.json").is_file():
                    continue
                subprocess.run([cli, "train", "--model", ",".join(models), "--data", args.data, "--out", str(run),
                                f"seed={seed}", f"encoder_precision={precision}", "verbose=0", *args.extra], check=True)
    table = summarise(out, seeds, models)
    for model, row in table.items():
        cells = [f"{model:9s}"]
        for p in ("fp32", "int8"):
            if p in row:
                cells.append(f"{p} micro {row[p]['micro_f1']:.4f} macro {row[p]['macro_f1']:.4f} (n={row[p]['seeds']})")
        if "delta_micro_f1" in row:
            cells.append(f"delta micro {row['delta_micro_f1']:+.4f} macro {row['delta_macro_f1']:+.4f}")
        print("  ".join(cells))
    print(json.dumps(table))


if __name__ == "__main__":
    main()
