"""Ablations on the validation split: imbalance handling and loss functions, one run folder per variant.

Usage: python benchmarks/ablation.py [--data DIR] [--out runs/ablation] [--models text,gmu] [--epochs N]

Each variant trains one model with one switch changed; a markdown table of validation metrics is printed and an HTML
report comparing all variants is written to OUT/report.html. Thresholds are cross-fitted on the validation films
(metrics.json "tuned"), so the comparison is not flattered by tuning on the scored films.
"""
from __future__ import annotations

import argparse
import json
import time

VARIANTS = {
    "bce (oversample, no pos_weight)": {},
    "bce, no oversampling": {"oversample": False},
    "bce + pos_weight": {"pos_weight": True},
    "focal": {"loss": "focal"},
    "asl (asymmetric)": {"loss": "asl"},
}
CNN_VARIANTS = {  # the model's own defaults (config.MODEL_DEFAULTS) with one switch changed
    "oversample + augment, no pos_weight": {"pos_weight": False},
    "no augmentation, no pos_weight": {"augment": False, "pos_weight": False},
    "no oversampling, no pos_weight": {"oversample": False, "pos_weight": False},
    "+ pos_weight (cnn default)": {"pos_weight": True},
}


def main() -> None:
    import movie_genres as mg

    ap = argparse.ArgumentParser()
    ap.add_argument("--data")
    ap.add_argument("--out", default="runs/ablation")
    ap.add_argument("--models", default="text,gmu")
    ap.add_argument("--epochs", type=int)
    args = ap.parse_args()
    from movie_genres.io import new_run_dir

    out = new_run_dir(args.out)
    rows, runs = [], []
    for model in args.models.split(","):
        variants = CNN_VARIANTS if model in ("cnn", "bilstm") else VARIANTS
        for label, overrides in variants.items():
            slug = label.split(" (")[0].replace(" ", "_").replace("+", "plus").replace(",", "")
            t = time.perf_counter()
            run = mg.train(model, args.data, out / f"{model}-{slug}", epochs=args.epochs, verbose=0, **overrides)
            m = json.loads((run / "metrics.json").read_text())
            rows.append((model, label, m["tuned"], m["at_0_5"], time.perf_counter() - t))
            runs.append(run)
            t = m["tuned"]
            print(f"{model:7s} {label:34s} micro-F1 {t['micro_f1']:.3f} macro-F1 {t['macro_f1']:.3f} mAP {t['map_macro']:.3f}", flush=True)
    print("\n| model | variant | micro-F1 | macro-F1 | samples-F1 | mAP | micro-P@0.5 | train s |\n| --- | --- | --- | --- | --- | --- | --- | --- |")
    for model, label, tuned, half, secs in rows:
        cells = [f"{tuned[k]:.3f}" for k in ("micro_f1", "macro_f1", "samples_f1", "map_macro")] + [f"{half['micro_precision']:.3f}"]
        print(f"| {model} | {label} | {' | '.join(cells)} | {secs:.0f} |")
    print(mg.report(runs, out / "report.html"))


if __name__ == "__main__":
    main()
