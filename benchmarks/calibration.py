"""Calibration of a trained run's validation probabilities: the ECE before and after per-label Platt scaling
(cross-fitted on 5 folds of the validation films, as training fits it), and the reliability table.

Usage: python benchmarks/calibration.py RUN_DIR [RUN_DIR ...]   (a folder of runs stands for its best run)
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from movie_genres.evaluation.calibration import fit_calibration
from movie_genres.runs import Run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    for path in ap.parse_args().runs:
        run = Run(path)
        ids, y, probs = run.validation_predictions()
        fit = fit_calibration(run.genres, y, probs, run.trained)
        mask = run.trained
        bins = np.clip((probs[:, mask] * 10).astype(int), 0, 9)
        table = []
        for b in range(10):
            sel = bins == b
            if sel.sum():
                table.append({"bin": f"{b / 10:.1f}-{(b + 1) / 10:.1f}", "entries": int(sel.sum()),
                              "mean probability": round(float(probs[:, mask][sel].mean()), 3),
                              "fraction with the label": round(float(y[:, mask][sel].mean()), 3)})
        print(json.dumps({"run": str(run.path), "model": run.model_name, "films": len(ids),
                          "ece_before": fit["ece_before"], "ece_after (cross-fitted)": fit["ece_after"],
                          "labels calibrated": sum(v is not None for v in fit["labels"].values()),
                          "labels learned": int(mask.sum()), "reliability (model)": table}, indent=2))


if __name__ == "__main__":
    main()
