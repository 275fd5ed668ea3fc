"""Does fine-tuning MiniLM end to end pay for its time? A probe, not a product model.

Usage: python benchmarks/finetune_minilm.py RUN_DIR [--epochs 3] [--lr 3e-5] [--batch 32]

RUN_DIR is a finished run (its ``split.csv`` and ``genres.json`` give the same training / validation films and genres as
every model in the README). The bundled all-MiniLM-L6-v2 (mean pooling) gets a linear layer of 25 sigmoids; all of it
trains with AdamW on binary cross-entropy (positive-weighted as the heads are), in plain torch. After each epoch the
validation films are scored like every run: per-genre thresholds cross-fitted on validation, micro / macro-F1 and
mAP over the learned genres present. Prints one line per epoch with its seconds.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    import movie_genres  # noqa: F401  (environment defaults: offline hubs, torch backend)
    # isort: split
    import pandas as pd
    import torch
    from sentence_transformers import SentenceTransformer

    from movie_genres.data.dataset import load_dataset
    from movie_genres.evaluation.metrics import full_metrics
    from movie_genres.features.encoders import MiniLMEncoder
    from movie_genres.training.train import positive_weights

    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--data")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--head-lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    torch.manual_seed(args.seed)

    ds = load_dataset(args.data)
    split = pd.read_csv(f"{args.run_dir}/split.csv").set_index("Id")["split"].reindex(list(ds.ids)).to_numpy()
    genres = json.load(open(f"{args.run_dir}/genres.json"))
    trained = np.array(genres["trained"], dtype=bool)
    has_text = np.array([bool(t and t.strip()) for t in ds.overviews])
    tr = np.flatnonzero((split == "train") & has_text)
    va = np.flatnonzero(split == "val")
    y = ds.labels.astype(np.float32)

    st = SentenceTransformer(str(MiniLMEncoder._model_dir()), device="cpu", local_files_only=True)
    tok, bert = st.tokenizer, st[0].auto_model
    head = torch.nn.Linear(384, y.shape[1])
    pos_weight = torch.tensor(positive_weights(y[tr]), dtype=torch.float32)
    mask = torch.tensor(trained, dtype=torch.float32)
    opt = torch.optim.AdamW([{"params": bert.parameters(), "lr": args.lr}, {"params": head.parameters(), "lr": args.head_lr}], weight_decay=0.01)
    steps = args.epochs * int(np.ceil(len(tr) / args.batch))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (0.06 * steps)) * max(0.0, (steps - s) / steps))

    def embed(idx):
        batch = tok([ds.overviews[i] or "" for i in idx], padding=True, truncation=True, max_length=256, return_tensors="pt")
        h = bert(**batch).last_hidden_state
        m = batch["attention_mask"].unsqueeze(-1).float()
        return (h * m).sum(1) / m.sum(1).clamp(min=1e-9)

    rng = np.random.default_rng(args.seed)
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        bert.train()
        order = rng.permutation(tr)
        for start in range(0, len(tr), args.batch):
            idx = order[start : start + args.batch]
            logits = head(torch.nn.functional.normalize(embed(idx), dim=1) * 10)
            target = torch.tensor(y[idx])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight, reduction="none")
            loss = (loss * mask).sum() / (mask.sum() * len(idx))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        train_s = time.perf_counter() - t0
        bert.eval()
        probs = np.zeros((len(va), y.shape[1]), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, len(va), 128):
                idx = va[start : start + 128]
                p = torch.sigmoid(head(torch.nn.functional.normalize(embed(idx), dim=1) * 10)).numpy()
                probs[start : start + len(idx)] = np.where(has_text[idx, None], p, 0.0)
        m = full_metrics(genres["genres"], ds.labels[va], probs, np.full(len(trained), 0.5), trained)["tuned"]
        print(f"epoch {epoch}: train {train_s:.0f} s, validation micro-F1 {m['micro_f1']:.3f} macro-F1 {m['macro_f1']:.3f} "
              f"mAP {m['map_macro']:.3f}", flush=True)


if __name__ == "__main__":
    main()
