"""Quality round 2 experiments on the validation split (docs/BENCHMARKS.md, "Quality round 2"): ensembles of runs,
kNN label votes, stacking, flip test-time averaging, seeds, threshold objectives.

Reads the runs ``RUNS/<encoder>/<model>`` (``movie-genres train --model MODEL text_encoder=ENCODER --out ...``), the
out-of-fold training probabilities of ``benchmarks/quality_oof.py`` (``RUNS/oof``), the head variants of
``benchmarks/quality_heads.py`` (``RUNS/heads``) and the mirrored-poster features of ``benchmarks/quality_flip.py``
(``RUNS/flip_features.npz``). Every number is scored as ``metrics.json``'s ``tuned`` (micro-F1, macro-F1, mAP;
thresholds cross-fitted on 5 folds of the validation films), on the 1,012 validation films.

    MOVIE_GENRES_CACHE=... python benchmarks/quality_eval.py RUNS runs|knn|stack|rules|flip|seeds|thresholds
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from movie_genres.config import make_config  # noqa: F401  (first: sets the Keras backend)

MEMBERS = ("text", "image", "early", "gmu", "late", "ensemble")


# ------------------------------------------------------------------------------------------------ data and scoring
class Data:
    def __init__(self, root: str, features: bool = True):
        from movie_genres.data.dataset import load_dataset, resolve_data_dir
        from movie_genres.data.split import stratified_split

        self.root = Path(root)
        self.ds = load_dataset(resolve_data_dir(None))
        self.tr, self.va = stratified_split(self.ds.labels, 0.2, 42)
        self.y = self.ds.labels.astype(np.int8)
        self.trained = self.y[self.tr].sum(0) >= 10
        self.F = load_features(self.ds) if features else {}

    def score(self, p, y=None):
        return score(self.y[self.va] if y is None else y, np.nan_to_num(p) * self.trained, self.trained)

    def show(self, name, p, y=None):
        r = self.score(p, y)
        print(f"{name:72s} {r[0]:.3f} {r[1]:.3f} {r[2]:.3f}", flush=True)
        return r

    def run(self, enc, model):
        return run_probs(self.root, enc, model, self.ds, self.va)


def load_features(ds):
    from movie_genres.features.inputs import PretrainedFeatures

    F = {}
    for enc in ("mpnet", "minilm"):
        x, _, _ = PretrainedFeatures(enc, ()).transform(ds.poster_paths, ds.overviews, progress=False)
        F[enc], F["has_overview"] = x["text_features"], x["has_overview"][:, 0] > 0
    x, _, _ = PretrainedFeatures(None, ("effnet-lite0", "nsfw-resnet50")).transform(ds.poster_paths, ds.overviews, progress=False)
    F["image"], F["has_poster"] = x["image_features"], x["has_poster"][:, 0] > 0
    return F


def score(y, p, trained):
    from movie_genres.evaluation.metrics import full_metrics

    m = full_metrics([str(i) for i in range(y.shape[1])], y, p, np.full(y.shape[1], 0.5), trained)["tuned"]
    return m["micro_f1"], m["macro_f1"], m["map_macro"]


def run_probs(root, enc, model, ds, va):
    import pandas as pd

    frame = pd.read_csv(Path(root) / enc / model / "val_predictions.csv", dtype={"Id": str}).set_index("Id")
    return frame.reindex([ds.ids[i] for i in va])[[f"prob_{g}" for g in ds.genres]].to_numpy(dtype=np.float32)


def l2(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def logit(p):
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


# ------------------------------------------------------------------------------------------------ kNN label votes
def knn_vote(bank, labels, query, k=30, tau=1.0, exclude_self=False):
    """Similarity-weighted (softmax of cosine / tau) genre vote of the k nearest films in ``bank`` (rows L2-normalised);
    ``exclude_self``: ``query`` is ``bank`` and a film does not vote for itself (out-of-fold on the training films)."""
    out = np.zeros((len(query), labels.shape[1]), dtype=np.float32)
    for s in range(0, len(query), 512):
        sims = query[s:s + 512] @ bank.T
        if exclude_self:
            sims[np.arange(len(sims)), np.arange(s, s + len(sims))] = -np.inf
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        ts = np.take_along_axis(sims, top, axis=1)
        w = np.exp((ts - ts.max(axis=1, keepdims=True)) / tau)
        out[s:s + 512] = np.einsum("nk,nkg->ng", w / w.sum(axis=1, keepdims=True), labels[top])
    return out


def spaces(d: Data):
    """The embedding spaces searched: mpnet, MiniLM, posters (EfficientNet-Lite0 and ResNet parts normalised apart)."""
    F = d.F
    image = l2(np.concatenate([l2(F["image"][:, :1280]), l2(F["image"][:, 1280:])], axis=1))
    return {"mpnet": (l2(F["mpnet"]), F["has_overview"]), "minilm": (l2(F["minilm"]), F["has_overview"]),
            "image": (image, F["has_poster"])}


def knn_members(d: Data, k=30, tau=1.0):
    """kNN votes as members: out-of-fold on the training films (leave-one-out) and on validation (bank: training)."""
    Y = d.y.astype(np.float32)
    oofs, vals = {}, {}
    for name, (X, has) in spaces(d).items():
        bank = d.tr[has[d.tr]]
        pos = {j: i for i, j in enumerate(bank)}
        o = knn_vote(X[bank], Y[bank], X[bank], k, tau, exclude_self=True)
        oofs[f"knn-{name}"] = np.stack([o[pos[j]] if j in pos else np.zeros(Y.shape[1], np.float32) for j in d.tr])
        vals[f"knn-{name}"] = knn_vote(X[bank], Y[bank], X[d.va], k, tau)
    return oofs, vals


def first_stage(d: Data, names):
    """Out-of-fold training probabilities and validation probabilities of first-stage models (quality_oof.py)."""
    oofs, vals = {}, {}
    for name in names:
        z = np.load(d.root / "oof" / f"{name}.npz")
        pos = {j: i for i, j in enumerate(z["train_idx"])}
        oofs[name] = np.stack([z["oof"][pos[j]] if j in pos else np.zeros(d.y.shape[1], np.float32) for j in d.tr])
        vpos = {j: i for i, j in enumerate(z["val_idx"])}
        vals[name] = np.stack([z["val"][vpos[j]] for j in d.va])
    return oofs, vals


# ------------------------------------------------------------------------------------------------ second stages
def stack_all(Xtr, ytr, Xva, trained, k, C=0.1):
    """Per genre, a logistic regression on every member's every-genre logit (standardised): label structure."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(Xtr)
    a, b = sc.transform(Xtr), sc.transform(Xva)
    out = np.zeros((len(Xva), ytr.shape[1]), np.float32)
    for g in np.flatnonzero(trained):
        out[:, g] = LogisticRegression(C=C, max_iter=3000).fit(a, ytr[:, g]).predict_proba(b)[:, 1]
    return out


def stack_own(Xtr, ytr, Xva, trained, k, C=1.0):
    """Per genre, a logistic regression on that genre's member logits only (a learned per-genre mix)."""
    from sklearn.linear_model import LogisticRegression

    G = ytr.shape[1]
    out = np.zeros((len(Xva), G), np.float32)
    for g in np.flatnonzero(trained):
        cols = [m * G + g for m in range(k)]
        out[:, g] = LogisticRegression(C=C, max_iter=3000).fit(Xtr[:, cols], ytr[:, g]).predict_proba(Xva[:, cols])[:, 1]
    return out


def stack_own_labels(Xtr, ytr, Xva, trained, k, C=1.0):
    """Per genre, its member logits plus every other genre's mean-member logit (standardised): "Animation -> Family"."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    G = ytr.shape[1]
    mean_tr = np.mean([Xtr[:, m * G:(m + 1) * G] for m in range(k)], axis=0)
    mean_va = np.mean([Xva[:, m * G:(m + 1) * G] for m in range(k)], axis=0)
    out = np.zeros((len(Xva), G), np.float32)
    for g in np.flatnonzero(trained):
        cols = [m * G + g for m in range(k)]
        others = [h for h in np.flatnonzero(trained) if h != g]
        a = np.concatenate([Xtr[:, cols], mean_tr[:, others]], axis=1)
        b = np.concatenate([Xva[:, cols], mean_va[:, others]], axis=1)
        sc = StandardScaler().fit(a)
        out[:, g] = LogisticRegression(C=C, max_iter=3000).fit(sc.transform(a), ytr[:, g]).predict_proba(sc.transform(b))[:, 1]
    return out


def on_validation(Xva, yva, trained, k, fit=stack_own, folds=5, **kw):
    """A second stage fitted on validation films instead, scored honestly: each fold from a stage fitted on the others."""
    from sklearn.model_selection import KFold

    out = np.zeros((len(Xva), yva.shape[1]), np.float32)
    for a, b in KFold(folds, shuffle=True, random_state=1).split(Xva):
        out[b] = fit(Xva[a], yva[a], Xva[b], trained & (yva[a].sum(0) > 1), k, **kw)
    return out


# ------------------------------------------------------------------------------------------------ experiments
def exp_runs(d: Data):
    for enc in ("minilm", "mpnet"):
        for m in MEMBERS:
            if (d.root / enc / m / "val_predictions.csv").exists():
                d.show(f"run {m} ({enc})", d.run(enc, m))
    for line in sorted((d.root / "heads").glob("*.npz")):
        z = np.load(line)
        assert list(z["val_idx"]) == list(d.va)
        d.show(f"head variant {line.stem}", z["val"])


def exp_knn(d: Data):
    Y = d.y.astype(np.float32)
    for name, (X, has) in spaces(d).items():
        bank = d.tr[has[d.tr]]
        for k, tau in ((10, 1.0), (30, 1.0), (100, 1.0), (30, 0.05), (50, 0.05), (100, 0.05), (30, 0.02)):
            d.show(f"knn {name} k={k} tau={tau}", knn_vote(X[bank], Y[bank], X[d.va], k, tau))
    _, vals = knn_members(d)
    for base in ("ensemble", "gmu", "late"):
        p = d.run("mpnet", base)
        for w in (0.1, 0.2, 0.3):
            d.show(f"{base} (mpnet) x{1 - w:.1f} + knn(mpnet, image)/2 x{w:.1f}", (1 - w) * p + w * (vals["knn-mpnet"] + vals["knn-image"]) / 2)
    for w in (0.3, 0.5):
        d.show(f"text (mpnet) x{1 - w:.1f} + knn(mpnet) x{w:.1f}", (1 - w) * d.run("mpnet", "text") + w * vals["knn-mpnet"])


def exp_stack(d: Data):
    oofs, vals = first_stage(d, ["text-mpnet", "image-mpnet", "early-mpnet", "gmu-mpnet", "text-minilm"])
    o2, v2 = knn_members(d)
    oofs.update(o2)
    vals.update(v2)
    ytr, yv = d.y[d.tr], d.y[d.va]
    for n in oofs:
        print(f"first stage {n:20s} out-of-fold on train", *(f"{v:.3f}" for v in d.score(oofs[n], ytr)), " validation",
              *(f"{v:.3f}" for v in d.score(vals[n])), flush=True)
    sets = [("text-mpnet", "image-mpnet"), ("text-mpnet", "image-mpnet", "knn-mpnet", "knn-image"),
            ("text-mpnet", "image-mpnet", "text-minilm"),
            ("text-mpnet", "image-mpnet", "text-minilm", "knn-mpnet", "knn-image", "knn-minilm"),
            ("early-mpnet", "gmu-mpnet"), ("text-mpnet", "image-mpnet", "early-mpnet", "gmu-mpnet"),
            ("text-mpnet", "image-mpnet", "early-mpnet", "gmu-mpnet", "knn-mpnet", "knn-image")]
    for s in sets:
        k, tag = len(s), " + ".join(s)
        Xtr = np.concatenate([logit(oofs[n]) for n in s], axis=1)
        Xva = np.concatenate([logit(vals[n]) for n in s], axis=1)
        d.show(f"mean: {tag}", np.mean([vals[n] for n in s], 0))
        for C in (0.1, 1.0):
            d.show(f"per-genre mix C={C}: {tag}", stack_own(Xtr, ytr, Xva, d.trained, k, C))
            d.show(f"per-genre mix + all genres C={C}: {tag}", stack_own_labels(Xtr, ytr, Xva, d.trained, k, C))
            d.show(f"per-genre mix on validation C={C}: {tag}", on_validation(Xva, yv, d.trained, k, C=C))
        for C in (0.01, 0.03, 0.1):
            d.show(f"every member x genre C={C}: {tag}", stack_all(Xtr, ytr, Xva, d.trained, k, C))


def exp_rules(d: Data):
    P = {f"{m}-{e}": d.run(e, m) for e in ("mpnet", "minilm") for m in MEMBERS}
    _, v = knn_members(d)
    P.update(v)

    def mean(*n):
        return np.mean([P[x] for x in n], 0)

    base = ("early-mpnet", "gmu-mpnet", "late-mpnet", "text-mpnet", "image-mpnet")
    d.show("mean of early, gmu, late, text, image (the ensemble's rule)", mean(*base))
    d.show("mean of early, gmu, late", mean(*base[:3]))
    d.show("mean of gmu, late", mean("gmu-mpnet", "late-mpnet"))
    d.show("mean of early, gmu, late, text", mean(*base[:4]))
    d.show("the ensemble's five + knn(mpnet)", mean(*base, "knn-mpnet"))
    d.show("mean of logits of the ensemble's five", 1 / (1 + np.exp(-np.mean([logit(P[x]) for x in base], 0))))
    d.show("ensemble (mpnet) + ensemble (minilm)", mean("ensemble-mpnet", "ensemble-minilm"))
    d.show("gmu (mpnet) + gmu (minilm)", mean("gmu-mpnet", "gmu-minilm"))
    d.show("text (mpnet) + text (minilm)", mean("text-mpnet", "text-minilm"))
    d.show("text (mpnet) + text (minilm) + knn(mpnet)", mean("text-mpnet", "text-minilm", "knn-mpnet"))
    d.show("the ensemble's five (mpnet) + early, gmu (minilm)", mean(*base, "gmu-minilm", "early-minilm"))


def _late_weights(run_dir: Path):
    import json
    import zipfile

    def find(o):
        if isinstance(o, dict):
            if o.get("class_name") == "LateFusion":
                return o["config"]["text_weight"]
            o = list(o.values())
        if isinstance(o, list):
            for v in o:
                r = find(v)
                if r is not None:
                    return r
        return None

    return np.array(find(json.loads(zipfile.ZipFile(run_dir / "model.keras").read("config.json"))))


def exp_flip(d: Data):
    import keras

    from movie_genres.models.inference import predict_proba_arrays
    from movie_genres.models.registry import register_layers

    register_layers()
    z = np.load(d.root / "flip_features.npz")
    assert list(z["ids"]) == list(d.ds.ids)
    F, va = d.F, d.va

    def inputs(img):
        return {"text_features": F["mpnet"][va], "image_features": img[va],
                "has_overview": F["has_overview"][va, None].astype(np.float32), "has_poster": F["has_poster"][va, None].astype(np.float32)}

    for m in MEMBERS:
        model = keras.saving.load_model(d.root / "mpnet" / m / "model.keras", compile=False)
        a, b = predict_proba_arrays(model, inputs(F["image"])), predict_proba_arrays(model, inputs(z["image_features"]))
        d.show(f"{m} (mpnet): poster as is", a)
        d.show(f"{m} (mpnet): poster mirrored", b)
        d.show(f"{m} (mpnet): mean of both (flip test-time averaging)", (a + b) / 2)


def exp_seeds(d: Data):
    def seed(m, s):
        z = np.load(d.root / "heads" / f"{m}-mpnet-fit_seed={s}.npz")
        assert list(z["val_idx"]) == list(d.va)
        return z["val"]

    img, w = d.run("mpnet", "image"), _late_weights(d.root / "mpnet" / "late")
    B = {m: [d.run("mpnet", m), seed(m, 1), seed(m, 2)] for m in ("text", "early", "gmu")}
    for m in B:
        for i, s in enumerate((42, 1, 2)):
            d.show(f"{m} (mpnet), weights seed {s}", B[m][i])
        d.show(f"{m} (mpnet), mean of the 3 seeds", np.mean(B[m], 0))

    def late(t):
        return w * t + (1 - w) * img

    for i, s in enumerate((42, 1, 2)):
        d.show(f"ensemble (mpnet) of the seed-{s} members", (B["early"][i] + B["gmu"][i] + late(B["text"][i]) + B["text"][i] + img) / 5)
    tb, eb, gb = (np.mean(B[m], 0) for m in ("text", "early", "gmu"))
    d.show("ensemble (mpnet) of members averaged over the 3 seeds", (eb + gb + late(tb) + tb + img) / 5)


def exp_thresholds(d: Data):
    from movie_genres.evaluation.metrics import full_metrics

    for enc in ("mpnet", "minilm"):
        for m in ("text", "gmu", "ensemble"):
            p = np.nan_to_num(d.run(enc, m)) * d.trained
            for obj in ("micro", "per_genre"):
                t = full_metrics(d.ds.genres, d.y[d.va], p, np.full(25, 0.5), d.trained, objective=obj)["tuned"]
                print(f"{m} ({enc}) threshold_objective={obj:10s} {t['micro_f1']:.3f} {t['macro_f1']:.3f} {t['map_macro']:.3f}")


EXPERIMENTS = {"runs": exp_runs, "knn": exp_knn, "stack": exp_stack, "rules": exp_rules, "flip": exp_flip,
               "seeds": exp_seeds, "thresholds": exp_thresholds}

if __name__ == "__main__":
    root, *names = sys.argv[1:]
    data = Data(root, features=not set(names) <= {"runs", "seeds", "thresholds"})
    for name in names or EXPERIMENTS:
        print(f"== {name}", flush=True)
        EXPERIMENTS[name](data)
