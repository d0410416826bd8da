"""Write the SciFact train/dev split files used to select retrieval settings.

    python bench/scifact_split.py OUT_DIR

Dev is the last 20% of the train query ids sorted numerically
(:func:`ragd.retrieval.beir_eval.split_query_ids`); the embedder is fine-tuned on the rest only.
Writes ``queries.{train,dev}.jsonl`` and ``qrels.{train,dev}.tsv`` in BEIR format.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ragd.retrieval.beir_eval import load_qrels, load_queries, split_query_ids

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/scifact-split")
    out.mkdir(parents=True, exist_ok=True)
    queries = load_queries(DATA / "queries.train.jsonl")
    qrels = load_qrels(DATA / "qrels.train.tsv")
    train, dev = split_query_ids(queries)
    for name, ids in (("train", train), ("dev", dev)):
        with open(out / f"queries.{name}.jsonl", "w") as fh:
            for qid in ids:
                fh.write(json.dumps({"_id": qid, "text": queries[qid]}) + "\n")
        with open(out / f"qrels.{name}.tsv", "w") as fh:
            fh.write("query-id\tcorpus-id\tscore\n")
            for qid in ids:
                for doc, grade in qrels.get(qid, {}).items():
                    fh.write(f"{qid}\t{doc}\t{grade}\n")
        print(f"{name}: {len(ids)} queries -> {out}")


if __name__ == "__main__":
    main()
