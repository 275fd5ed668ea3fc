"""``movie-genres VERB ...``: each verb parses its arguments and makes one call to the Python API."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys


def _parser() -> argparse.ArgumentParser:
    from movie_genres.models.registry import MODELS

    p = argparse.ArgumentParser(prog="movie-genres", description="Tell a film's genres from its poster and its overview.")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = p.add_subparsers(dest="verb", required=True)

    t = sub.add_parser("train", help="train a model (or --model all) into a new run folder")
    t.add_argument("--model", default="cnn", help=" | ".join(MODELS + ("all",)) + ", or several as a comma list (trained as one job, like all)")
    t.add_argument("--data", help="dataset folder (default: ../shared/data/multimodal-imdb)")
    t.add_argument("--manifest", help="CSV or Parquet manifest to train on instead: Id, poster, overview and a column of "
                   "label lists")
    t.add_argument("--labels", metavar="COLUMN", help="the manifest's column of label lists (default: genres; "
                   "the config key label_column)")
    t.add_argument("--out", help="run folder (default runs/<model>; never overwritten)")
    t.add_argument("--epochs", type=int, help="maximum epochs (early stopping may stop sooner)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    t.add_argument("--retrain", action="store_true", help="train even when the run cache holds the identical finished run")
    t.add_argument("--jobs", type=int, help="with --model all (or a list): models trained at once, each in its own process "
                   "(default 2 where there are 2 cores; 1 trains them in turn here, with progress bars)")
    t.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. augment=false lstm_units=256,128")

    e = sub.add_parser("evaluate", help="score a run on every usable film of a dataset")
    e.add_argument("run_dir")
    e.add_argument("--data", help="dataset folder to score (default: the run's own validation split, on the data it "
                   "was trained on); films the run trained on are left out and counted")
    e.add_argument("--manifest", help="a CSV or Parquet manifest to score instead of --data (labels: --labels)")
    e.add_argument("--labels", metavar="COLUMN", help="the manifest's column of label lists (default: the run's)")
    e.add_argument("--include-training-films", action="store_true",
                   help="with --data: score the films the run trained on too (marked in the answer; optimistic)")
    e.add_argument("--output", help="write the metrics JSON here")

    pr = sub.add_parser("predict", help="genres of one film, or of every film of a catalogue (--data / --manifest)")
    pr.add_argument("run_dir")
    pr.add_argument("--poster", help="poster image file")
    text = pr.add_mutually_exclusive_group()
    text.add_argument("--overview", help="plot summary text")
    text.add_argument("--overview-file", metavar="PATH", help="read the overview from a UTF-8 text file ('-': standard input)")
    pr.add_argument("--explain", action="store_true", help="also say why: overview words and poster regions by how much "
                    "they move each decided genre, and each genre from the poster alone / the overview alone (JSON)")
    pr.add_argument("--genre", action="append", help="with --explain: explain this genre (repeatable; default: the decided ones)")
    pr.add_argument("--threshold", help="decide at another threshold than the run's: a number for every label, f1, "
                    "precision:P or recall:R (tuned on the run's validation predictions); no retraining")
    pr.add_argument("--top-k", type=int, metavar="K", help="at most the K most probable of the decided labels")
    pr.add_argument("--review-band", type=float, default=0.05, metavar="B", help="catalogue: list labels within B of "
                    "their threshold in the review column (default 0.05)")
    _catalogue_options(pr, "predict")

    en = sub.add_parser("encode", help="fill the feature cache that train reads with a catalogue's encoder features")
    _catalogue_options(en, "encode")

    r = sub.add_parser("report", help="one HTML report comparing runs")
    r.add_argument("runs", nargs="+")
    r.add_argument("--output", default="report.html")
    r.add_argument("--data", help="dataset folder for the sample-predictions section")
    r.add_argument("--explain", metavar="RUN", help="show why this run (or a folder of runs' best) gives each sample film "
                   "its most probable genre: words and poster regions (about a second a film)")

    s = sub.add_parser("serve", help="prediction API and web page")
    s.add_argument("run_dir", help="a run folder, or a folder of runs (its best.json names the run)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    s.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    from movie_genres.service.limits import add_options

    add_options(s)
    return p


def _overview(args) -> str | None:
    """The overview given to ``predict``: --overview text, or the bytes of --overview-file / stdin, as UTF-8."""
    from pathlib import Path

    from movie_genres.data.dataset import DataError
    from movie_genres.data.text import decode_overview, has_surrogates

    if args.overview_file is None:
        if args.overview is not None and has_surrogates(args.overview):  # bytes the locale could not decode
            try:
                raw = os.fsencode(args.overview)
            except UnicodeEncodeError:
                raise DataError("--overview is not valid text; give the overview as UTF-8") from None
            return decode_overview(raw, "--overview")
        return args.overview
    if args.overview_file == "-":
        return decode_overview(sys.stdin.buffer.read(), "the overview on standard input")
    path = Path(args.overview_file)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read --overview-file {path}: {exc.strerror or exc}") from None
    return decode_overview(raw, f"--overview-file {path}")


def _source(args):
    """The films a verb reads: --data DIR or --manifest FILE (not both)."""
    if args.data and args.manifest:
        raise ValueError("give --data DIR or --manifest FILE, not both")
    return args.manifest or args.data


def _catalogue_options(p: argparse.ArgumentParser, verb: str) -> None:
    c = p.add_argument_group("a catalogue (see docs/CLUSTER.md for Ray)")
    c.add_argument("--data", help="dataset-format folder (genre columns optional), or a folder of posters")
    c.add_argument("--manifest", help="CSV or Parquet file with columns Id, poster (path or URI), overview")
    if verb == "predict":
        c.add_argument("--output", help="OUT.parquet or OUT.csv: one row per film (run again to continue)")
    else:
        c.add_argument("--encoders", help="comma-separated encoders (default: the default config's)")
    c.add_argument("--engine", default="local", choices=["local", "ray"], help="local (default) or ray")
    c.add_argument("--batch-size", type=int, default=64, help="films decoded and encoded at once (default 64)")
    c.add_argument("--actors", type=int, help="with --engine ray: actors (default: one per two CPUs)")
    c.add_argument("--address", help="with --engine ray: 'auto' or ray://HOST:PORT joins a cluster (default: a local Ray)")


def _catalogue_verb(args) -> dict:
    import movie_genres as mg

    kw = dict(engine=args.engine, batch_size=args.batch_size, actors=args.actors, address=args.address, progress=not args.quiet)
    if args.verb == "encode":
        encoders = [e.strip() for e in args.encoders.split(",") if e.strip()] if args.encoders else None
        return mg.encode(args.data, args.manifest, encoders, **kw)
    if args.poster is not None or args.overview is not None or args.overview_file is not None:
        raise ValueError("give either one film (--poster / --overview) or a catalogue (--data / --manifest), not both")
    if not args.output:
        raise ValueError("a catalogue needs --output OUT.parquet or OUT.csv")
    return mg.predict_batch(args.run_dir, args.data, args.manifest, args.output, threshold=args.threshold,
                            top_k=args.top_k, review_band=args.review_band, **kw)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s")
    import movie_genres as mg
    from movie_genres.catalogue.errors import EngineError
    from movie_genres.config import ConfigError, parse_overrides
    from movie_genres.data.dataset import DataError
    from movie_genres.features.posters import PosterError
    from movie_genres.io import OutputError
    from movie_genres.models.registry import MODELS
    from movie_genres.predictor import RunError
    from movie_genres.training.parallel import TrainingFailed

    try:
        if args.verb == "train":
            overrides = parse_overrides(args.overrides)
            if args.labels:
                overrides["label_column"] = args.labels
            epochs = args.epochs if args.epochs is not None else overrides.pop("epochs", None)
            if args.resume:
                run = mg.train(resume=args.resume, data=_source(args), epochs=epochs)
            elif args.model == "all" or "," in args.model:
                models = MODELS if args.model == "all" else [m.strip() for m in args.model.split(",") if m.strip()]
                run = mg.train_all(_source(args), args.out or "runs/main", epochs, models=models, reuse=not args.retrain,
                                   jobs=args.jobs, **overrides)
            else:
                run = mg.train(args.model, _source(args), args.out, epochs, reuse=not args.retrain, **overrides)
            print(run)
        elif args.verb == "evaluate":
            m = mg.evaluate(args.run_dir, _source(args), args.output, include_training_films=args.include_training_films,
                            label_column=args.labels)
            print(json.dumps({k: v for k, v in m.items() if k not in ("per_genre", "baselines")}, indent=2))
        elif args.verb == "encode" or (args.verb == "predict" and (args.data or args.manifest)):
            print(json.dumps(_catalogue_verb(args), indent=2))
        elif args.verb == "predict":
            if args.output or args.engine != "local":
                raise ValueError("--output and --engine are for a catalogue: give --data DIR or --manifest FILE")
            if args.genre and not args.explain:
                raise ValueError("--genre needs --explain")
            if args.explain:
                print(json.dumps(mg.explain(args.run_dir, args.poster, _overview(args), args.genre), indent=2))
            else:
                result = mg.predict(args.run_dir, args.poster, _overview(args), threshold=args.threshold, top_k=args.top_k)
                for warning in result.get("warnings", ()):
                    print(f"movie-genres predict: warning: {warning}", file=sys.stderr)
                print(json.dumps(result, indent=2))
        elif args.verb == "report":
            print(mg.report(args.runs, args.output, args.data, explain=args.explain))
        elif args.verb == "serve":
            from movie_genres.service.limits import options

            log_level = "warning" if args.quiet else "info"
            mg.serve(args.run_dir, args.host, args.port, log_level=log_level, **options(args))
    except (ConfigError, DataError, PosterError, OutputError, RunError, TrainingFailed, EngineError, ValueError, FileNotFoundError) as exc:
        print(f"movie-genres {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
