"""``ragd eval retrieval`` and ``ragd finetune embedder`` on a tiny BEIR dataset; metrics; reranker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragd.cli import app
from ragd.retrieval.base import SearchHit
from ragd.retrieval.beir_eval import mrr_at, ndcg_at, recall_at, split_query_ids

DOCS = {
    "d1": ("Cats", "Domestic cats sleep most of the day."),
    "d2": ("Dogs", "Dogs are loyal companions and need daily walks."),
    "d3": ("Qubits", "Quantum computers use qubits and entanglement."),
    "d4": ("Vitamin D", "Vitamin D supplements improve bone density in older adults."),
    "d5": ("Coffee", "Caffeine in coffee increases alertness."),
    "d6": ("Sleep", "Adults need seven to nine hours of sleep."),
    "d7": ("Volcanoes", "Volcanic eruptions release ash and sulfur dioxide."),
    "d8": ("Bees", "Honey bees pollinate crops and make honey."),
}
QUERIES = {
    "1": "how long do cats sleep",
    "2": "dog walks",
    "3": "quantum qubits",
    "4": "bone density supplements",
    "5": "does coffee make you alert",
    "6": "hours of sleep for adults",
    "7": "volcano ash",
    "8": "pollination by bees",
    "9": "a query without judgements",
}
QRELS = {str(i): f"d{i}" for i in range(1, 9)}


@pytest.fixture
def beir(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "beir"
    d.mkdir()
    with open(d / "corpus.jsonl", "w") as fh:
        for i, (t, x) in DOCS.items():
            fh.write(json.dumps({"_id": i, "title": t, "text": x}) + "\n")
    with open(d / "queries.jsonl", "w") as fh:
        for i, q in QUERIES.items():
            fh.write(json.dumps({"_id": i, "text": q}) + "\n")
    with open(d / "qrels.tsv", "w") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for q, doc in QRELS.items():
            fh.write(f"{q}\t{doc}\t1\n")
    return {"corpus": d / "corpus.jsonl", "queries": d / "queries.jsonl", "qrels": d / "qrels.tsv"}


def _args(files: dict[str, Path], *extra: str) -> list[str]:
    return [
        "eval",
        "retrieval",
        "--corpus",
        str(files["corpus"]),
        "--queries",
        str(files["queries"]),
        "--qrels",
        str(files["qrels"]),
        *extra,
    ]


def test_metrics() -> None:
    rels = {"a": 1, "b": 2}
    assert ndcg_at(["b", "a", "x"], rels, 10) == pytest.approx(1.0)
    assert ndcg_at(["x", "a"], rels, 10) == pytest.approx((1 / 1.5849625) / (2 + 1 / 1.5849625))
    assert recall_at(["x", "a"], rels, 100) == 0.5 and recall_at([], rels, 100) == 0.0
    assert mrr_at(["x", "y", "b"], rels, 10) == pytest.approx(1 / 3) and mrr_at(["x"], rels, 10) == 0.0


def test_split_is_sorted_numerically_and_holds_out_the_last_fifth() -> None:
    train, dev = split_query_ids([str(i) for i in (10, 9, 2, 100, 1)])
    assert train == ["1", "2", "9", "10"] and dev == ["100"]


def test_eval_retrieval_prints_json_and_caches_the_index(beir: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"RAGD_DATA_DIR": str(tmp_path / "data"), "RAGD_LOG_JSON": "false"}
    out = tmp_path / "out.json"
    first = runner.invoke(app, _args(beir, "--mode", "hybrid", "--json", str(out)), env=env)
    assert first.exit_code == 0, first.output
    result = json.loads(out.read_text())
    assert set(result) == {"ndcg@10", "recall@100", "mrr@10", "queries", "mode", "embedder"}
    assert result["queries"] == 8 and result["mode"] == "hybrid" and result["embedder"] == "all-MiniLM-L6-v2"
    assert result["ndcg@10"] > 0.9 and result["recall@100"] == 1.0
    assert json.loads(first.stdout.strip().splitlines()[0]) == result
    assert "indexing 8 of 8 documents" in first.stderr
    second = runner.invoke(app, _args(beir, "--mode", "sparse"), env=env)
    assert second.exit_code == 0, second.output
    assert "using cached index" in second.stderr and "indexing" not in second.stderr
    assert json.loads(second.stdout.strip().splitlines()[0])["mode"] == "sparse"


def test_eval_retrieval_bad_input_is_one_line(beir: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"RAGD_DATA_DIR": str(tmp_path / "data")}
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    empty = tmp_path / "empty.tsv"
    empty.write_text("query-id\tcorpus-id\tscore\n")
    cases = [
        (_args(beir, "--mode", "fuzzy"), "--mode"),
        (_args({**beir, "corpus": tmp_path / "missing.jsonl"}), "does not exist"),
        (_args({**beir, "queries": bad}), "not JSON"),
        (_args({**beir, "qrels": empty}), "no query"),
        (_args(beir, "--embedder", "no-such-model"), "RAGD_EMBEDDING__MODEL"),
    ]
    for args, message in cases:
        res = runner.invoke(app, args, env=env)
        assert res.exit_code == 2, res.output
        assert message in res.stderr and "Traceback" not in res.output
        assert len(res.stderr.strip().splitlines()) == 1


def test_finetune_embedder_refuses_an_unknown_miner_before_any_work(
    beir: dict[str, Path], tmp_path: Path
) -> None:
    files = [f"--{k}={v}" for k, v in beir.items()]
    res = CliRunner().invoke(
        app,
        ["finetune", "embedder", *files, "--negatives", "colbert"],
        env={"RAGD_DATA_DIR": str(tmp_path / "data")},
    )
    assert res.exit_code == 2 and "'colbert' is not one of 'dense', 'bm25'" in res.output
    assert "Traceback" not in res.output and not (tmp_path / "data").exists()


@pytest.mark.slow
def test_finetune_embedder_registers_and_is_usable(beir: dict[str, Path], tmp_path: Path) -> None:
    from ragd.config import Settings
    from ragd.db.engine import build_engine
    from ragd.llm_serving.model_registry import get_model

    runner = CliRunner()
    env = {"RAGD_DATA_DIR": str(tmp_path / "data")}
    res = runner.invoke(
        app,
        [
            "finetune",
            "embedder",
            "--queries",
            str(beir["queries"]),
            "--qrels",
            str(beir["qrels"]),
            "--corpus",
            str(beir["corpus"]),
            "--name",
            "tiny-embedder",
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--dev-fraction",
            "0.25",
            "--max-seq-length",
            "64",
        ],
        env=env,
    )
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout.strip().splitlines()[-1])
    assert info["name"] == "tiny-embedder" and info["version"] == 1
    assert (Path(info["path"]) / "modules.json").exists()
    assert info["metrics"]["train_queries"] == 6 and info["metrics"]["dev_queries"] == 2
    assert info["metrics"]["negatives"] == "dense"  # mined by the base embedder by default
    assert 0.0 <= info["metrics"]["dev_ndcg@10"] <= 1.0 and "base_dev_ndcg@10" in info["metrics"]
    entry = get_model(build_engine(Settings(data_dir=tmp_path / "data")), "tiny-embedder")
    assert entry.kind == "embedder" and entry.training_data_hash and entry.base_model == "all-MiniLM-L6-v2"
    # The registry name is now a valid embedder for evaluation (and for RAGD_EMBEDDING__MODEL).
    ev = runner.invoke(app, _args(beir, "--mode", "dense", "--embedder", "tiny-embedder"), env=env)
    assert ev.exit_code == 0, ev.output
    assert json.loads(ev.stdout.strip().splitlines()[0])["embedder"] == "tiny-embedder@1"


def test_dense_mined_negatives_are_the_base_embedders_near_misses(
    beir: dict[str, Path], tmp_path: Path
) -> None:
    from ragd.retrieval.beir_eval import load_beir
    from ragd.retrieval.finetune import BASE_EMBEDDER, DenseMiner, passage, training_examples
    from ragd.retrieval.registry import build_embedder
    from tests.conftest import make_settings

    data = load_beir(beir["corpus"], beir["queries"], beir["qrels"])
    docs = {d: passage(t, x) for d, (t, x) in data.corpus.items()}
    miner = DenseMiner(docs, build_embedder(make_settings(tmp_path), model=BASE_EMBEDDER))
    assert miner.top("how many hours should adults sleep", 1) == ["d6"]
    # "how long do cats sleep": the sleep page is the base model's nearest miss, then the rest.
    ranked = miner.top(QUERIES["1"], 8)
    assert ranked[0] == "d1" and ranked[1] == "d6" and sorted(ranked) == sorted(DOCS)
    rows = training_examples(data, ["1"], hard_negatives=1, seed=3, miner=miner, skip=1)
    # Below the skipped top: never the positive, and drawn from the miner's list.
    assert len(rows) == 1 and rows[0]["positive"] == docs["d1"]
    assert rows[0]["negative_1"] in {docs[d] for d in ranked[1:]}
    # No miner and no negatives asked: pairs only.
    assert set(training_examples(data, ["1"], hard_negatives=0, seed=3)[0]) == {"anchor", "positive"}


def test_cross_encoder_reranker_reorders_by_its_scores(tmp_path: Path) -> None:
    from sentence_transformers import CrossEncoder

    from ragd.llm_serving.model_files import minilm_dir
    from ragd.retrieval.reranker import CrossEncoderReranker

    path = tmp_path / "ce"
    CrossEncoder(str(minilm_dir()), num_labels=1, local_files_only=True).save(str(path))
    rr = CrossEncoderReranker(path, name="ce")
    hits = [
        SearchHit(
            point_id=str(i),
            score=1.0 - i / 10,
            text=DOCS[f"d{i}"][1],
            document_id=f"d{i}",
            version=1,
            chunk_index=0,
            collection_id="c",
        )
        for i in range(1, 6)
    ]
    out = rr.rerank("cats sleeping", hits, 3)
    assert len(out) == 3 and [h.score for h in out] == sorted((h.score for h in out), reverse=True)
    scores = {h.document_id: h.score for h in rr.rerank("cats sleeping", hits, 5)}
    assert set(scores) == {h.document_id for h in hits}
    assert rr.rerank("q", [], 3) == []
