"""``movie-genres VERB ...``: each verb parses its arguments and makes one call to the Python API."""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys

VERBS = ("train", "evaluate", "predict", "encode", "report", "serve", "config")
# A config item: ``key=value`` with an identifier key, anywhere on the line (an option's own value is never one).
KEY_VALUE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


def _verbosity() -> argparse.ArgumentParser:
    """-q / -v, accepted before and after the verb (SUPPRESS: a verb's parser leaves what came before it alone)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="only warnings and errors")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug messages too")
    return common


def _parser() -> argparse.ArgumentParser:
    from movie_genres._version import __version__
    from movie_genres.models.registry import MODELS

    p = argparse.ArgumentParser(prog="movie-genres", description="Tell a film's genres from its poster and its overview.",
                                epilog="Config items (key=value, `movie-genres config` lists them) go anywhere on a train line.")
    p.add_argument("--version", action="version", version=f"movie-genres {__version__}")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    p.add_argument("-v", "--verbose", action="store_true", help="debug messages too")
    sub = p.add_subparsers(dest="verb", required=True)
    common = [_verbosity()]

    p.verbs = {}  # name -> its parser, for errors that name the verb

    def verb(name: str, **kw) -> argparse.ArgumentParser:
        p.verbs[name] = sub.add_parser(name, parents=common, **kw)
        return p.verbs[name]

    t = verb("train", help="train a model (or --model all) into a new run folder",
             usage="%(prog)s [-h] [--model MODEL] [--data DATA] [--output RUN_DIR] [--epochs N] [--resume RUN_DIR] [--retrain] "
                   "[--jobs N] [-q | -v] [key=value ...]",
             epilog="key=value items set config keys, anywhere on the line (e.g. augment=false lstm_units=256,128); "
                    "`movie-genres config` lists every key with its default and why")
    t.add_argument("--model", default="cnn", help=" | ".join(MODELS + ("all",)) + ", or several as a comma list (trained as one job, like all)")
    t.add_argument("--data", help="dataset folder (default: ../shared/data/multimodal-imdb)")
    t.add_argument("--manifest", help="CSV or Parquet manifest to train on instead: Id, poster, overview and a column of "
                   "label lists")
    t.add_argument("--labels", metavar="COLUMN", help="the manifest's column of label lists (default: genres; "
                   "the config key label_column)")
    t.add_argument("--output", "--out", dest="output", metavar="RUN_DIR",
                   help="run folder (default runs/<model>, runs/main for several; never overwritten); --out is the same")
    t.add_argument("--epochs", type=int, help="maximum epochs (early stopping may stop sooner)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    t.add_argument("--retrain", action="store_true", help="train even when the run cache holds the identical finished run")
    t.add_argument("--jobs", type=int, help="with --model all (or a list): models trained at once, each in its own process "
                   "(default 2 where there are 2 cores; 1 trains them in turn here, with progress bars)")

    e = verb("evaluate", help="score a run on every usable film of a dataset")
    e.add_argument("run_dir")
    e.add_argument("--data", help="dataset folder to score (default: the run's own validation split, on the data it "
                   "was trained on); films the run trained on are left out and counted")
    e.add_argument("--manifest", help="a CSV or Parquet manifest to score instead of --data (labels: --labels)")
    e.add_argument("--labels", metavar="COLUMN", help="the manifest's column of label lists (default: the run's)")
    e.add_argument("--include-training-films", action="store_true",
                   help="with --data: score the films the run trained on too (marked in the answer; optimistic)")
    e.add_argument("--output", help="write the metrics JSON here")

    pr = verb("predict", help="genres of one film, or of every film of a catalogue (--data / --manifest)")
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
    pr.add_argument("--review-band", type=float, metavar="B", help="catalogue: list labels within B of "
                    "their threshold in the review column (default 0.05)")
    _catalogue_options(pr, "predict")

    en = verb("encode", help="fill the feature cache that train reads with a catalogue's encoder features")
    _catalogue_options(en, "encode")

    r = verb("report", help="one HTML report comparing runs")
    r.add_argument("runs", nargs="+")
    r.add_argument("--output", default="report.html")
    r.add_argument("--data", help="dataset folder for the sample-predictions section")
    r.add_argument("--explain", metavar="RUN", help="show why this run (or a folder of runs' best) gives each sample film "
                   "its most probable genre: words and poster regions (about a second a film)")

    s = verb("serve", help="prediction API and web page")
    s.add_argument("run_dir", help="a run folder, or a folder of runs (its best.json names the run)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    s.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    from movie_genres.service.limits import add_options

    s.add_argument("--threshold", help="decide at another threshold than the run's: a number, f1, precision:P or recall:R")
    s.add_argument("--top-k", type=int, metavar="K", help="at most the K most probable of the decided labels")
    add_options(s)

    c = verb("config", help="every config key (train key=value) with its default, valid values and why")
    c.add_argument("--json", action="store_true", help="as JSON")
    return p


def _config_table(as_json: bool) -> str:
    from movie_genres.config import describe

    keys = describe()
    if as_json:
        return json.dumps(keys, indent=2)

    def shown(v) -> str:
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, list):
            return ",".join(map(str, v))
        return repr(v) if v == "" else str(v)

    rows = [("key", "default", "valid", "why")]
    for k in keys:
        extra = "".join(f" ({m}: {shown(v)})" for m, v in k["model_defaults"].items())
        rows.append((k["name"], shown(k["default"]) + extra, k["valid"] or "-", k["why"]))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:<{widths[2]}}  {d}" for a, b, c, d in rows)


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
        c.add_argument("--output", help="OUT.parquet or OUT.csv: one row per film (run again to continue); for one film: "
                       "the answer's JSON also goes to this file")
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


def _split_argv(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Parse ``argv``; the ``key=value`` items (anywhere, before the verb too) come back apart, in order."""
    first_verb = next((i for i, a in enumerate(argv) if a in VERBS), len(argv))
    early = [a for a in argv[:first_verb] if KEY_VALUE.match(a)]  # key=value before the verb: moved after it
    argv = [a for a in argv[:first_verb] if not KEY_VALUE.match(a)] + argv[first_verb:first_verb + 1] + early + argv[first_verb + 1:]
    args, extra = parser.parse_known_args(argv)
    verb = parser.verbs[args.verb]
    items = [a for a in extra if KEY_VALUE.match(a)]
    rest = [a for a in extra if not KEY_VALUE.match(a)]
    if rest and args.verb == "train" and not rest[0].startswith("-"):
        items.append(rest[0])  # parse_overrides says it is not key=value
    elif rest:
        verb.error(f"unrecognized arguments: {' '.join(rest)}")
    if items and args.verb != "train":
        verb.error(f"config items ({' '.join(items)}) are for train; {args.verb} takes none")
    if args.quiet and args.verbose:
        verb.error("-q and -v do not go together")
    return args, items


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, items = _split_argv(parser, list(sys.argv[1:] if argv is None else argv))
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(message)s")
    if args.verb == "config":
        print(_config_table(args.json))
        return 0
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
            overrides = parse_overrides(items)
            if args.labels:
                overrides["label_column"] = args.labels
            epochs_item = overrides.pop("epochs", None)  # epochs=N is the same as --epochs N (which wins)
            epochs = args.epochs if args.epochs is not None else epochs_item
            if args.resume:
                run = mg.train(resume=args.resume, data=_source(args), epochs=epochs)
            elif args.model == "all" or "," in args.model:
                models = MODELS if args.model == "all" else [m.strip() for m in args.model.split(",") if m.strip()]
                run = mg.train_all(_source(args), args.output or "runs/main", epochs, models=models, reuse=not args.retrain,
                                   jobs=args.jobs, **overrides)
            else:
                run = mg.train(args.model, _source(args), args.output, epochs, reuse=not args.retrain, **overrides)
            print(run)
        elif args.verb == "evaluate":
            m = mg.evaluate(args.run_dir, _source(args), args.output, include_training_films=args.include_training_films,
                            label_column=args.labels)
            print(json.dumps({k: v for k, v in m.items() if k not in ("per_genre", "baselines")}, indent=2))
        elif args.verb == "encode" or (args.verb == "predict" and (args.data or args.manifest)):
            print(json.dumps(_catalogue_verb(args), indent=2))
        elif args.verb == "predict":
            if args.engine != "local":
                raise ValueError("--engine is for a catalogue: give --data DIR or --manifest FILE")
            if args.genre and not args.explain:
                raise ValueError("--genre needs --explain")
            if args.output:
                from pathlib import Path

                from movie_genres.io import check_writable

                if Path(args.output).suffix.lower() != ".json":
                    raise ValueError(f"--output {args.output}: one film's answer is written as .json; a catalogue's "
                                     ".parquet or .csv needs --data DIR or --manifest FILE")
                check_writable(args.output)
            if args.explain:
                result = mg.explain(args.run_dir, args.poster, _overview(args), args.genre)
            else:
                result = mg.predict(args.run_dir, args.poster, _overview(args), threshold=args.threshold, top_k=args.top_k)
                for warning in result.get("warnings", ()):
                    print(f"movie-genres predict: warning: {warning}", file=sys.stderr)
            if args.output:
                from movie_genres.io import write_json

                write_json(args.output, result)
            print(json.dumps(result, indent=2))
        elif args.verb == "report":
            print(mg.report(args.runs, args.output, args.data, explain=args.explain))
        elif args.verb == "serve":
            from movie_genres.service.limits import options

            log_level = "warning" if args.quiet else "debug" if args.verbose else "info"
            mg.serve(args.run_dir, args.host, args.port, log_level=log_level, threshold=args.threshold, top_k=args.top_k,
                     **options(args))
    except (ConfigError, DataError, PosterError, OutputError, RunError, TrainingFailed, EngineError, ValueError, FileNotFoundError) as exc:
        print(f"movie-genres {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
