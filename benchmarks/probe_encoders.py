"""Time the frozen encoders on the shared data and probe their features with a linear classifier.

    python benchmarks/probe_encoders.py [--data DIR] [--cache /tmp/mg-cache] [--cold] [--encoders ...]

For each encoder: embed every film (cold: the encoder's cache file is deleted first with --cold; then again warm,
straight from the cache). Then random 80/20 splits (seeds 0.., --repeats of them) and, per feature set, a one-vs-rest
LogisticRegression on standardised features. C is picked from a small grid and per-genre thresholds are tuned to the
best F1, both on 3-fold out-of-fold predictions on the train split only; each test split is scored once: micro ROC-AUC,
micro-F1 (tuned thresholds) and micro-F1 at 0.5. Genres with fewer than 5 train positives get the train prior.

Results (mean and sd over the splits) are printed and written to <cache>/probe.json. The cache lives outside the repo and dataset.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

# one BLAS thread: the one-vs-rest fits are many small problems; threaded BLAS made them ~5x slower on a busy CPU
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from movie_genres.data.dataset import load_dataset  # noqa: E402
from movie_genres.features.encoders import (  # noqa: E402
    EfficientNetLiteEncoder,
    Encoder,
    cache_path,
    cached_features,
    get_encoder,
)

DEFAULT_DATA = "/work/shared/data/multimodal-imdb"


def make_encoder(name: str) -> Encoder:
    """Registered names, plus probe-only variants: effnet-lite{N}[-squash|-crop|-pad][-SIZE]."""
    try:
        return get_encoder(name)
    except ValueError:
        if not name.startswith("effnet-lite"):
            raise
        variant, *rest = name[len("effnet-lite"):].split("-")
        size = int(rest.pop()) if rest and rest[-1].isdigit() else None
        return EfficientNetLiteEncoder(int(variant), rest[0] if rest else "full", size=size)


def load_rows(data: Path, limit: int = 0) -> tuple[list[str], list[str], list[Path], np.ndarray, list[str]]:
    """Films with both a poster and an overview, through the project's validated loader."""
    ds = load_dataset(data, require=("poster", "overview"))
    n = min(len(ds), limit) if limit else len(ds)
    return ds.ids[:n], ds.overviews[:n], ds.poster_paths[:n], ds.labels[:n].astype(np.int8), list(ds.genres)


def embed(name: str, texts, posters, cache: Path, cold: bool) -> tuple[np.ndarray, dict]:
    enc = make_encoder(name)
    items = texts if enc.modality == "overview" else [str(p) for p in posters]
    path = cache_path(enc, cache)
    if cold and path.exists():
        path.unlink()
    was_cached = path.exists()
    t0, c0 = time.perf_counter(), time.process_time()
    X = cached_features(enc, items, cache, batch_size=64, progress=True)
    first_wall, first_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0 = time.perf_counter()
    X2 = cached_features(enc, items, cache, progress=False)
    warm = time.perf_counter() - t0
    assert np.array_equal(X, X2), "warm cache returned different features"
    info = {
        "version": enc.version,
        "dim": enc.dim,
        "n": len(items),
        "first_call": "warm" if was_cached else "cold",
        "first_wall_s": round(first_wall, 1),
        "first_cpu_s": round(first_cpu, 1),
        "warm_wall_s": round(warm, 2),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    print(f"{name}: {info}", flush=True)
    return X, info


def _fit_predict(Xtr, Ytr, Xte, C: float, min_pos: int = 5) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    P = np.zeros((len(Xte), Ytr.shape[1]), dtype=np.float64)
    for j in range(Ytr.shape[1]):
        y = Ytr[:, j]
        if y.sum() < min_pos or y.sum() > len(y) - min_pos:
            P[:, j] = y.mean()
            continue
        clf = LogisticRegression(C=C, max_iter=1000)
        clf.fit(Xtr, y)
        P[:, j] = clf.predict_proba(Xte)[:, 1]
    return P


def _oof(X, Y, C: float, folds: int, seed: int) -> np.ndarray:
    from sklearn.model_selection import KFold

    P = np.zeros(Y.shape, dtype=np.float64)
    for tr, va in KFold(folds, shuffle=True, random_state=seed).split(X):
        P[va] = _fit_predict(X[tr], Y[tr], X[va], C)
    return P


def _tune_thresholds(Y, P) -> np.ndarray:
    from sklearn.metrics import f1_score

    grid = np.linspace(0.02, 0.9, 45)
    th = np.full(Y.shape[1], 0.5)
    for j in range(Y.shape[1]):
        if Y[:, j].sum() == 0:
            th[j] = 1.0  # never predicted
            continue
        scores = [f1_score(Y[:, j], P[:, j] >= t, zero_division=0) for t in grid]
        th[j] = grid[int(np.argmax(scores))]
    return th


def probe(X: np.ndarray, Y: np.ndarray, tr: np.ndarray, te: np.ndarray, grid=(3e-4, 1e-3, 3e-3, 1e-2), folds=3,
          seed=0) -> dict:
    from sklearn.metrics import f1_score, roc_auc_score
    from sklearn.preprocessing import StandardScaler

    t0 = time.perf_counter()
    sc = StandardScaler().fit(X[tr])
    Xtr, Xte = sc.transform(X[tr]).astype(np.float32), sc.transform(X[te]).astype(np.float32)
    Ytr, Yte = Y[tr], Y[te]
    best = None
    for C in grid:
        P = _oof(Xtr, Ytr, C, folds, seed)
        auc = roc_auc_score(Ytr, P, average="micro")
        if best is None or auc > best[0]:
            best = (auc, C, P)
    _, C, Poof = best
    th = _tune_thresholds(Ytr, Poof)
    Pte = _fit_predict(Xtr, Ytr, Xte, C)
    return {
        "C": C,
        "micro_auc": round(float(roc_auc_score(Yte, Pte, average="micro")), 4),
        "micro_f1_tuned": round(float(f1_score(Yte, Pte >= th, average="micro", zero_division=0)), 4),
        "micro_f1_at_0.5": round(float(f1_score(Yte, Pte >= 0.5, average="micro", zero_division=0)), 4),
        "probe_s": round(time.perf_counter() - t0, 1),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--cache", default="/tmp/mg-cache")
    ap.add_argument("--encoders", nargs="+", default=[
        "minilm", "effnet-lite0", "effnet-lite0-squash", "effnet-lite0-crop", "effnet-lite0-pad", "nsfw-resnet50"])
    ap.add_argument("--stack", nargs="*", default=["effnet-lite0+nsfw-resnet50", "minilm+effnet-lite0+nsfw-resnet50"],
                    help="feature sets to concatenate, names joined by '+' (columns are standardised in the probe)")
    ap.add_argument("--cold", action="store_true", help="delete each encoder's cache file first to time a cold run")
    ap.add_argument("--no-probe", action="store_true")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=1, help="average the probe over this many random splits")
    ap.add_argument("--out", default="", help="results JSON (default <cache>/probe.json)")
    ap.add_argument("--sets", nargs="*", help="probe only these feature sets (default: prior, each encoder, each stack)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    data, cache = Path(args.data), Path(args.cache)
    ids, texts, posters, Y, genres = load_rows(data, args.limit)
    print(f"{len(ids)} films, {len(genres)} genres, cache {cache}", flush=True)
    feats, timing = {}, {}
    for name in args.encoders:
        feats[name], timing[name] = embed(name, texts, posters, cache, args.cold)

    results = {"n_films": len(ids), "timing": timing, "probe": {}}
    out = Path(args.out) if args.out else cache / "probe.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    if not args.no_probe:
        n_te = int(round(0.2 * len(ids)))
        splits = []
        for r in range(args.repeats):
            perm = np.random.default_rng(args.seed + r).permutation(len(ids))
            splits.append((np.sort(perm[n_te:]), np.sort(perm[:n_te])))
        sets = {name: feats[name] for name in args.encoders}
        for combo in args.stack:
            parts = combo.split("+")
            if all(p in feats for p in parts):
                sets[combo] = np.concatenate([feats[p] for p in parts], axis=1)
        sets = {"prior": np.zeros((len(ids), 1), np.float32), **sets}  # no features: the train prevalence
        if args.sets:
            sets = {k: v for k, v in sets.items() if k in args.sets}
        for name, X in sets.items():
            runs = [probe(X, Y, tr, te, seed=args.seed) for tr, te in splits]
            res = {"C": [r["C"] for r in runs]}
            for k in ("micro_auc", "micro_f1_tuned", "micro_f1_at_0.5"):
                vals = np.array([r[k] for r in runs])
                res[k] = round(float(vals.mean()), 4)
                res[k + "_sd"] = round(float(vals.std(ddof=1)), 4) if len(vals) > 1 else 0.0
                res[k + "_per_split"] = vals.tolist()  # same splits for every feature set: compare pairwise
            res["probe_s"] = round(sum(r["probe_s"] for r in runs), 1)
            results["probe"][name] = res
            print(f"{name:36s} AUC {res['micro_auc']:.4f}±{res['micro_auc_sd']:.4f}  "
                  f"F1 tuned {res['micro_f1_tuned']:.4f}±{res['micro_f1_tuned_sd']:.4f}  "
                  f"F1@0.5 {res['micro_f1_at_0.5']:.4f}±{res['micro_f1_at_0.5_sd']:.4f}  C {res['C']}", flush=True)
            out.write_text(json.dumps(results, indent=2) + "\n")  # partial results survive an interrupted run

    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
