"""Are explanations faithful? Deleting a film's top-ranked word should lower the genre more than deleting a random one.

Usage: python benchmarks/explain_faithfulness.py RUN_DIR [--data DIR] [--films N] [--seed S] [--output F.json]

For N validation films of the run (random, seeded; films with an overview, and with a poster where the model reads
posters), each decided genre is explained (``movie_genres.explanation.explain``). Then the edited films go through the
predictor's ordinary path (``predict_proba`` on the whole edited film: every input encoded again, nothing reused from
the explanation), and the genre's drop in probability is measured for:

- the top-ranked word deleted, against one word drawn at random (uniformly, from all the film's words);
- the top 3 words deleted together, against 3 random words (a test of the ranking beyond one-word occlusion, which is
  not additive);
- where the model reads posters, the poster's top cell greyed, against a random cell.

Printed: mean drops, over (film, genre) pairs, and the fraction of films whose mean drop over their decided genres is
larger for the top-ranked than for the random deletion (ties count as not larger).
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np


def main() -> None:
    from movie_genres.data.dataset import load_dataset
    from movie_genres.explanation import explain, without_span
    from movie_genres.features.posters import open_poster
    from movie_genres.io import read_json
    from movie_genres.predictor import Predictor

    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--data")
    ap.add_argument("--films", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output")
    args = ap.parse_args()

    pred = Predictor.load(args.run_dir)
    data = args.data or read_json(pred.run_dir / "config.json").get("data_dir")
    ds = load_dataset(data)
    import pandas as pd

    split = pd.read_csv(pred.run_dir / "split.csv", dtype=str)
    val = set(split.loc[split["split"] == "val", "Id"])
    reads_poster = "poster" in pred.modalities
    rows = [i for i, fid in enumerate(ds.ids) if fid in val and ds.overviews[i] and (ds.poster_paths[i] is not None or not reads_poster)]
    rng = np.random.default_rng(args.seed)
    chosen = rng.choice(rows, size=min(args.films, len(rows)), replace=False)

    kinds = ["word", "3 words"] + (["cell"] if reads_poster else [])
    pairs = {k: {"top": [], "random": []} for k in kinds}
    films = {k: {"top": [], "random": []} for k in kinds}
    t0 = time.perf_counter()
    for i in chosen:
        overview = ds.overviews[i]
        poster = open_poster(ds.poster_paths[i]) if reads_poster else None
        exp = explain(pred, poster, overview)
        spans = exp["words"]
        if len(spans) < 4:
            continue
        # the edited films, each genre's: top word, random word, top 3, random 3, top cell, random cell
        edits, index = [(poster, overview)], {}
        for g, e in exp["explanations"].items():
            ranked = [w["i"] for w in e["words"]]
            rand1 = [int(rng.integers(len(spans)))]
            rand3 = [int(j) for j in rng.choice(len(spans), size=3, replace=False)]
            for name, which in (("word top", ranked[:1]), ("word random", rand1), ("3 words top", ranked[:3]), ("3 words random", rand3)):
                index[g, name] = len(edits)
                edits.append((poster, _delete(overview, [spans[j] for j in which], without_span)))
            if reads_poster:
                heat = np.asarray(e["heatmap"])
                top_cell = int(np.argmax(heat))
                rand_cell = int(rng.integers(heat.size))
                for name, cell in (("cell top", top_cell), ("cell random", rand_cell)):
                    index[g, name] = len(edits)
                    edits.append((_grey(poster, cell, exp["grid"]), overview))
        probs = pred.predict_proba([p for p, _ in edits], [o for _, o in edits])
        per_film = {(k, w): [] for k in kinds for w in ("top", "random")}
        for g in exp["explanations"]:
            j = pred.genres.index(g)
            for k in kinds:
                for w in ("top", "random"):
                    drop = float(probs[0, j] - probs[index[g, f"{k} {w}"], j])
                    pairs[k][w].append(drop)
                    per_film[k, w].append(drop)
        for k in kinds:
            for w in ("top", "random"):
                films[k][w].append(float(np.mean(per_film[k, w])))
    seconds = time.perf_counter() - t0

    result = {"run": str(pred.run_dir), "model": pred.model_name, "films": len(films["word"]["top"]),
              "pairs": len(pairs["word"]["top"]), "seconds": round(seconds, 1), "machine": platform.processor() or platform.machine(), "rows": {}}
    print(f"{pred.model_name}: {result['films']} validation films, {result['pairs']} (film, decided genre) pairs, {seconds:.0f} s")
    print("| deleted | mean drop, top-ranked | mean drop, random | films where top-ranked drops more |")
    print("| --- | --- | --- | --- |")
    for k in kinds:
        top, rand = np.array(pairs[k]["top"]), np.array(pairs[k]["random"])
        ftop, frand = np.array(films[k]["top"]), np.array(films[k]["random"])
        row = {"mean_drop_top": round(float(top.mean()), 4), "mean_drop_random": round(float(rand.mean()), 4),
               "films_top_larger": round(float((ftop > frand).mean()), 3), "pairs_top_larger": round(float((top > rand).mean()), 3)}
        result["rows"][k] = row
        label = {"word": "1 word", "3 words": "3 words", "cell": "1 poster cell"}[k]
        print(f"| {label} | {row['mean_drop_top']:.4f} | {row['mean_drop_random']:.4f} | {row['films_top_larger']:.1%} |")
    if args.output:
        from movie_genres.io import write_json

        write_json(args.output, result)


def _delete(text: str, spans: list[dict], without_span) -> str:
    for s in sorted(spans, key=lambda s: -s["start"]):  # from the end, so earlier offsets stay valid
        text = without_span(text, s["start"], s["end"])
    return text


def _grey(image, cell: int, grid):
    from movie_genres.explanation import occluded_posters

    return occluded_posters(image, tuple(grid))[cell]


if __name__ == "__main__":
    main()
