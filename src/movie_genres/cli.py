"""``movie-genres VERB ...``: each verb parses its arguments and makes one call to the Python API."""
from __future__ import annotations

import argparse
import json
import logging
import sys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="movie-genres", description="Tell a film's genres from its poster and its overview.")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = p.add_subparsers(dest="verb", required=True)

    t = sub.add_parser("train", help="train a model (or --model all) into a new run folder")
    t.add_argument("--model", default="cnn", help="cnn | bilstm | text | image | early | gmu | late | ensemble | all")
    t.add_argument("--data", help="dataset folder (default: ../shared/data/multimodal-imdb)")
    t.add_argument("--out", help="run folder (default runs/<model>; never overwritten)")
    t.add_argument("--epochs", type=int, help="maximum epochs (early stopping may stop sooner)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    t.add_argument("--retrain", action="store_true", help="train even when the run cache holds the identical finished run")
    t.add_argument("--jobs", type=int, help="with --model all: models trained at once, each in its own process "
                   "(default 2 where there are 2 cores; 1 trains them in turn here, with progress bars)")
    t.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. augment=false lstm_units=256,128")

    e = sub.add_parser("evaluate", help="score a run on every usable film of a dataset")
    e.add_argument("run_dir")
    e.add_argument("--data", help="dataset folder (default: ../shared/data/multimodal-imdb)")
    e.add_argument("--output", help="write the metrics JSON here")

    pr = sub.add_parser("predict", help="genres of one film")
    pr.add_argument("run_dir")
    pr.add_argument("--poster", help="poster image file")
    pr.add_argument("--overview", help="plot summary text")
    pr.add_argument("--explain", action="store_true", help="also say why: overview words and poster regions by how much "
                    "they move each decided genre, and each genre from the poster alone / the overview alone (JSON)")
    pr.add_argument("--genre", action="append", help="with --explain: explain this genre (repeatable; default: the decided ones)")

    r = sub.add_parser("report", help="one HTML report comparing runs")
    r.add_argument("runs", nargs="+")
    r.add_argument("--output", default="report.html")
    r.add_argument("--data", help="dataset folder for the sample-predictions section")

    s = sub.add_parser("serve", help="prediction API and web page")
    s.add_argument("run_dir")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s")
    import movie_genres as mg
    from movie_genres.config import ConfigError, parse_overrides
    from movie_genres.data.dataset import DataError
    from movie_genres.features.posters import PosterError
    from movie_genres.io import OutputError
    from movie_genres.predictor import RunError
    from movie_genres.training.parallel import TrainingFailed

    try:
        if args.verb == "train":
            overrides = parse_overrides(args.overrides)
            epochs = args.epochs if args.epochs is not None else overrides.pop("epochs", None)
            if args.resume:
                run = mg.train(resume=args.resume, data=args.data, epochs=epochs)
            elif args.model == "all":
                run = mg.train_all(args.data, args.out or "runs/main", epochs, reuse=not args.retrain, jobs=args.jobs, **overrides)
            else:
                run = mg.train(args.model, args.data, args.out, epochs, reuse=not args.retrain, **overrides)
            print(run)
        elif args.verb == "evaluate":
            m = mg.evaluate(args.run_dir, args.data, args.output)
            print(json.dumps({k: v for k, v in m.items() if k not in ("per_genre", "baselines")}, indent=2))
        elif args.verb == "predict":
            if args.genre and not args.explain:
                raise ValueError("--genre needs --explain")
            if args.explain:
                print(json.dumps(mg.explain(args.run_dir, args.poster, args.overview, args.genre), indent=2))
            else:
                print(json.dumps(mg.predict(args.run_dir, args.poster, args.overview), indent=2))
        elif args.verb == "report":
            print(mg.report(args.runs, args.output, args.data))
        elif args.verb == "serve":
            mg.serve(args.run_dir, args.host, args.port)
    except (ConfigError, DataError, PosterError, OutputError, RunError, TrainingFailed, ValueError, FileNotFoundError) as exc:
        print(f"movie-genres {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
