"""Plots and self-contained HTML pages built from run folders (see docs/ARCHITECTURE.md, "Run folder").

    write_run_plots(run_dir) -> list[Path]                             run_dir/plots/*.png
    write_samples_page(out_html, data, runs, ids=None, n=24, seed=0) -> Path
    write_report(run_dirs, out_html, data_dir=None, title=..., explanations=None) -> Path
    pick_sample_ids(runs, ids=None, n=24, seed=0) -> list[str]          the films the samples section shows

``data`` / ``data_dir`` is a dataset folder (read through ``movie_genres.data.dataset.load_dataset``) or a loaded
``Dataset``. The pages are Jinja2 templates in ``reporting/templates/``.
"""
from movie_genres.reporting.html import pick_sample_ids, write_report, write_samples_page
from movie_genres.reporting.plots import load_run, write_run_plots

__all__ = ["load_run", "pick_sample_ids", "write_report", "write_run_plots", "write_samples_page"]
