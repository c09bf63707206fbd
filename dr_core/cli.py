"""Command-line entry points, one per workflow step (`python -m dr_core <step> ...`)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from dr_core.settings import SettingsParser, settings_from_args

log = logging.getLogger("dr_core")
# The card's facts (recipe, base, data, round, negatives, command) are metadata it shows, free-form and growing,
# not settings that change what a step computes: they stay one JSON value instead of flags.
CARD_HELP = "model card facts: one JSON object of free-form metadata (dr_core.model_card), not a setting; '' = no card"


def _acquire(a: argparse.Namespace) -> None:
    from dr_core.acquire import acquire_beir

    acquire_beir(a.url, a.out_dir, md5=a.md5, cache_dir=a.cache_dir)


def _prepare(a: argparse.Namespace) -> None:
    from dr_core.beir import prepare_collection

    prepare_collection(a.src, a.out_dir, a.empty_docs)


def _qrels(a: argparse.Namespace) -> None:
    from dr_core.beir import prepare_qrels

    carve = None
    if a.dev_keep:
        carve = {"share": a.dev_share, "count": a.dev_count, "seed": a.dev_seed, "keep": a.dev_keep}
    prepare_qrels(a.src, a.split, a.corpus, a.queries, a.out, a.empty_docs, carve)


def _bm25(a: argparse.Namespace) -> None:
    import pandas as pd

    from dr_core.bm25 import bm25_search
    from dr_core.runs import write_trec

    corpus = pd.read_parquet(a.corpus)
    queries = _split_queries(a.queries, a.qrels)
    ids, scores = bm25_search(
        corpus,
        queries,
        a.k,
        k1=a.k1,
        b=a.b,
        stemmer=a.stemmer or None,
        stopwords=a.stopwords or None,
        threads=max(1, a.threads),
    )
    write_trec(a.out, queries["qid"].tolist(), ids, scores, tag="bm25")


def _likely_false_negatives(a: argparse.Namespace) -> dict[str, set[str]] | None:
    """The mine step's filter: ranked docs scored too near the query's weakest positive (None when off)."""
    if a.filter_relative is None and a.filter_margin is None:
        return None
    from dr_core.negatives import near_positive
    from dr_core.positive_scores import weakest_positive
    from dr_core.runs import iter_run_scores

    if not a.positive_scores:
        raise ValueError("--filter-relative/--filter-margin need --positive-scores")
    weakest, drop, window = weakest_positive(a.positive_scores), {}, {}
    for q, docs, ranks, scores in iter_run_scores(a.run):  # one pass: each query's drops, and those in the window
        if q in weakest:
            drop[q] = near_positive(docs, scores, weakest[q], a.filter_relative, a.filter_margin)
            window[q] = sum(a.rank_min <= r <= a.rank_max and d in drop[q] for d, r in zip(docs, ranks))
    log.info(
        "filter (relative %s, margin %s): %d of the window's candidates dropped over %d queries (%.2f per query, "
        "%d queries lost at least one)",
        a.filter_relative, a.filter_margin, sum(window.values()), len(window),
        sum(window.values()) / max(1, len(window)), sum(v > 0 for v in window.values()),
    )  # fmt: skip
    return drop


def _positive_scores(a: argparse.Namespace) -> None:
    from dr_core.positive_scores import dense_pair_scores, write_scores

    shards = list(zip(a.shards[::2], a.shards[1::2]))
    write_scores(dense_pair_scores(a.model, a.query_tokens, a.qrels, shards, a.max_len or None), a.out)


def _positive_scores_bm25(a: argparse.Namespace) -> None:
    from dr_core.positive_scores import bm25_positive_scores, write_scores

    settings = {"k1": a.k1, "b": a.b, "stemmer": a.stemmer or None, "stopwords": a.stopwords or None}
    write_scores(bm25_positive_scores(a.corpus, a.queries, a.qrels, **settings), a.out)


def _mine(a: argparse.Namespace) -> None:
    import pandas as pd

    from dr_core.negatives import mine, mix_negatives, write_negatives
    from dr_core.runs import iter_run

    run, qrels = iter_run(a.run), pd.read_parquet(a.qrels)  # the run is read a query at a time
    drop = _likely_false_negatives(a)
    if a.bm25_fraction > 0:  # a share of the negatives from BM25's window, the rest from this run's
        if not a.bm25_run:
            raise ValueError("--bm25-fraction > 0 needs --bm25-run")
        mined = mine(run, qrels, a.rank_min, a.rank_max, 0, a.seed, drop)
        bm25 = mine(iter_run(a.bm25_run), qrels, a.bm25_rank_min, a.bm25_rank_max, 0, a.seed)
        negs = mix_negatives(mined, bm25, a.n, a.bm25_fraction, a.seed)
    else:
        negs = mine(run, qrels, a.rank_min, a.rank_max, a.n, a.seed, drop)
    log.info("negatives for %d queries, %.1f per query", len(negs), sum(map(len, negs.values())) / max(1, len(negs)))
    write_negatives(negs, a.out)


def _denoise(a: argparse.Namespace) -> None:
    import pandas as pd

    from dr_core.denoise import denoise
    from dr_core.negatives import positives_by_query, read_negatives, write_negatives
    from dr_core.teacher import read_teacher_scores

    qrels = pd.read_parquet(a.qrels)
    positives = positives_by_query(qrels)
    kept, stats = denoise(
        read_negatives(a.negatives), positives, read_teacher_scores(a.teacher_scores), a.margin, a.max_score
    )
    log.info(
        "denoised %d queries: kept %d negatives, dropped %d (%.1f%%), %d had no teacher score",
        stats.queries, stats.kept, stats.dropped, 100 * stats.dropped_fraction, stats.unscored,
    )  # fmt: skip
    write_negatives(kept, a.out)


def _negatives_file(a: argparse.Namespace) -> None:
    from dr_core.msmarco.toolkits import read_negatives_file
    from dr_core.negatives import write_negatives

    write_negatives(read_negatives_file(a.src), a.out)


def _tokenize(a: argparse.Namespace) -> None:
    from dr_core.model import load_tokenizer
    from dr_core.tokenization import tokenize_table

    tok = load_tokenizer(a.model)
    tokenize_table(a.src, a.out, tok, a.max_len, a.id_column, a.template or None, a.batch_size, a.untitled_template)


def _init_model(a: argparse.Namespace) -> None:
    from dr_core.atomic import atomic_path
    from dr_core.model import BiEncoder, EncoderSpec, load_tokenizer

    spec = settings_from_args(EncoderSpec, a)
    model = BiEncoder.from_base(a.base, spec)
    with atomic_path(a.out, is_dir=True) as tmp:
        model.save(tmp, load_tokenizer(a.base))
        if a.card:
            from dr_core.model_card import write_card

            write_card(tmp, spec, json.loads(a.card))


def _merge_models(a: argparse.Namespace) -> None:
    from dr_core.merge import merge_models

    merge_models(a.base, a.tuned, a.alpha, a.out)


def _scale_t5(a: argparse.Namespace) -> None:
    from dr_core.t5 import scale_t5_model

    scale_t5_model(a.base, a.out)


def _train(a: argparse.Namespace) -> None:
    import pandas as pd

    from dr_core.clustering import read_assignments
    from dr_core.dro import DroSettings
    from dr_core.negatives import read_negatives
    from dr_core.train import Trainer, TrainSettings

    settings = settings_from_args(TrainSettings, a)
    qrels = pd.read_parquet(a.qrels)
    teacher = None
    if a.teacher_scores:
        from dr_core.teacher import read_teacher_scores

        teacher = read_teacher_scores(a.teacher_scores, set(qrels["qid"]))
    dro = settings_from_args(DroSettings, a, "dro")
    clusters = read_assignments(a.clusters) if a.clusters else None
    trainer = Trainer(
        a.init,
        a.queries,
        a.corpus,
        qrels,
        read_negatives(a.negatives),
        settings,
        a.checkpoint_dir,
        teacher,
        dro,
        clusters,
        json.loads(a.card) if a.card else None,
    )
    trainer.train(a.out, a.log)


def _teacher_scores(a: argparse.Namespace) -> None:
    import pandas as pd

    from dr_core.negatives import read_negatives
    from dr_core.teacher import candidates, load_texts, score_candidates, teacher_kind, write_teacher_scores

    kind = teacher_kind(a.model, a.kind, a.model_key)  # a clear error before any work
    groups = candidates(pd.read_parquet(a.qrels), read_negatives(a.negatives))
    query_text, passage_text = load_texts(a.queries, a.corpus, groups, a.template)
    scores = score_candidates(a.model, groups, query_text, passage_text, kind, a.batch_size, a.q_max_len, a.max_len)
    log.info("teacher %s: %d scores for %d queries", a.model, len(scores), scores["qid"].nunique())
    write_teacher_scores(scores, a.out, {"teacher": a.model, "kind": a.kind, "template": a.template})


def _train_reranker(a: argparse.Namespace) -> None:
    import pandas as pd

    from dr_core.negatives import read_negatives
    from dr_core.reranker import RerankerSettings, RerankerTrainer

    settings = settings_from_args(RerankerSettings, a)
    negatives = read_negatives(a.negatives)
    trainer = RerankerTrainer(
        a.base, a.queries, a.corpus, pd.read_parquet(a.qrels), negatives, a.template, settings, a.checkpoint_dir
    )
    trainer.train(a.out, a.log)


def _rerank(a: argparse.Namespace) -> None:
    from dr_core.reranker import rerank
    from dr_core.runs import read_trec, write_trec_frame
    from dr_core.teacher import load_texts, require_cross_encoder

    require_cross_encoder(a.model, a.model_key)
    run = read_trec(a.run)
    groups = run[run["rank"] <= a.depth].groupby("qid")["docid"].agg(list).to_dict()
    query_text, passage_text = load_texts(a.queries, a.corpus, groups, a.template)
    reranked = rerank(run, a.model, query_text, passage_text, a.depth, a.batch_size, a.max_len)
    write_trec_frame(a.out, reranked, a.tag)


def _msmarco(a: argparse.Namespace) -> None:
    from dr_core.msmarco import runs, tables, title_join, triples

    if a.step == "join":
        title_join.join_titles(*_given(a, "para", "titles"), a.out)
    elif a.step == "triples":
        triples.negatives_from_triples(*_given(a, "triples"), a.out)
    elif a.step == "corpus":
        tables.corpus_to_parquet(*_given(a, "corpus_tsv"), a.out)
    elif a.step == "queries":
        tables.queries_to_parquet(*_given(a, "query_files"), a.out)
    elif a.step == "qrels":
        tables.qrels_to_parquet(*_given(a, "qrels", "corpus", "queries"), a.out)
    elif a.step == "run":
        runs.trec_to_msmarco_run(*_given(a, "run"), a.out)


def _given(a: argparse.Namespace, *names: str) -> list:
    """The values of a step's input flags `names`; a ValueError naming each one missing."""
    missing = ["--" + name.replace("_", "-") for name in names if not getattr(a, name)]
    if missing:
        raise ValueError(f"{a.command} {a.step} needs {' and '.join(missing)}")
    return [getattr(a, name) for name in names]


def _fetch(a: argparse.Namespace) -> None:
    from dr_core.msmarco.files import fetch_raw_file

    fetch_raw_file(a.name, a.out, a.archive_dir)


def _lotte(a: argparse.Namespace) -> None:
    from dr_core import lotte

    if a.step == "fetch":
        lotte.fetch_lotte(a.out_dir, a.cache_dir)
    elif a.step == "prepare":
        lotte.prepare_lotte(a.src, a.out_dir, a.domain, a.split, a.query_set)
    else:
        lotte.prepare_lotte_qrels(a.src, a.domain, a.split, a.query_set, a.corpus, a.queries, a.out)


def _tevatron(a: argparse.Namespace) -> None:
    from dr_core import tevatron

    if a.step == "corpus":
        tevatron.write_corpus(*_given(a, "src"), a.out, a.cache_dir)
    elif a.step == "groups":
        src, corpus, queries, negatives = _given(a, "src", "corpus", "queries_out", "negatives_out")
        tevatron.write_split(src, corpus, a.out, queries, negatives, a.cache_dir, a.judgements)
    else:
        tevatron.merge_queries(*_given(a, "query_files"), a.out)


def _cluster(a: argparse.Namespace) -> None:
    from dr_core.clustering import kmeans, write_assignments
    from dr_core.encode import encode_judged_queries

    qids, emb = encode_judged_queries(a.model, a.query_tokens, a.qrels, a.batch_size)
    write_assignments(a.out, qids, kmeans(emb, a.num_clusters, seed=a.seed))


def _encode(a: argparse.Namespace) -> None:
    from dr_core.encode import encode_corpus_shard

    encode_corpus_shard(
        a.model, a.tokens, a.shard, a.num_shards, a.emb_out, a.ids_out, a.batch_size, a.max_len or None, fp16=a.fp16
    )


def _index(a: argparse.Namespace) -> None:
    from dr_core.index import build_index

    if len(a.shards) % 2:
        raise SystemExit("--shards takes pairs: embeddings.npy ids.txt")
    pairs = list(zip(a.shards[::2], a.shards[1::2]))
    build_index(pairs, a.model, a.out, a.meta_out, a.factory, a.memory_gb, a.seed, a.train_size or None)


def _retrieve(a: argparse.Namespace) -> None:
    from dr_core.search import retrieve

    options = {"nprobe": a.nprobe, "ef_search": a.ef_search, "gpu_fp16": a.gpu_fp16}
    n = retrieve(
        a.model, a.query_tokens, a.qrels, a.index, a.index_meta, a.ids, a.out, a.k, a.tag,
        a.query_batch, a.batch_size, a.max_len or None, **options,
    )  # fmt: skip
    log.info("%d queries, depth %d", n, a.k)


def _evaluate(a: argparse.Namespace) -> None:
    import pandas as pd

    from dr_core.atomic import write_json
    from dr_core.evaluate import evaluate
    from dr_core.runs import read_trec, run_to_dict

    mean, per_query = evaluate(run_to_dict(read_trec(a.run)), pd.read_parquet(a.qrels), a.metrics)
    log.info("%s %s/%s: %s", a.system, a.dataset, a.split, ", ".join(f"{k}={v:.4f}" for k, v in mean.items()))
    write_json(
        {"system": a.system, "dataset": a.dataset, "split": a.split, "metrics": mean, "per_query": per_query}, a.out
    )


def _summarize(a: argparse.Namespace) -> None:
    from dr_core.atomic import atomic_path
    from dr_core.evaluate import beir_table, markdown_table, summary_table
    from dr_core.significance import (
        check_baselines,
        format_p,
        legend,
        load_per_query,
        marked_values,
        marks,
        pvalue_columns,
    )

    if not 0 < a.alpha < 1:
        raise ValueError(f"--alpha (eval.alpha) must be in (0, 1), got {a.alpha}")
    table = summary_table([Path(p) for p in a.metrics])
    check_baselines(table, a.baselines)  # before anything is written
    per_query = load_per_query(a.metrics)
    tested = a.metric if a.metric in table.columns else table.columns[3]  # eval.metrics' first
    pvalues = pvalue_columns(table, per_query, a.baselines, tested)
    pcolumns = {c: pvalues[c].map(format_p) for c in pvalues}
    with atomic_path(a.out) as tmp:
        table.assign(**pcolumns).to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    shown = table.assign(**{tested: marked_values(table, tested, marks(table, pvalues, tested, a.alpha))}, **pcolumns)
    print(shown.to_string(index=False, float_format=lambda x: f"{x:.4f}", na_rep=""))
    print(legend(tested, a.baselines, a.alpha))
    if a.beir_out:
        metric = a.beir_metric if a.beir_metric in table.columns else table.columns[3]  # eval.metrics' first
        beir_p = pvalues if metric == tested else pvalue_columns(table, per_query, a.baselines, metric)
        beir = beir_table(table, metric, marked_values(table, metric, marks(table, beir_p, metric, a.alpha)))
        with atomic_path(a.beir_out) as tmp:
            beir.to_csv(tmp, sep="\t", index=False, float_format="%.4f")
        print(f"\n{metric} per evaluation dataset, avg = their mean:\n\n{markdown_table(beir)}")
        print(legend(metric, a.baselines, a.alpha, columns=False))


def _fuse(a: argparse.Namespace) -> None:
    from dr_core.fusion import fuse
    from dr_core.runs import read_trec, write_trec_frame

    weight = json.loads(Path(a.weight_file).read_text())["weight"] if a.weight_file else a.weight
    fused = fuse(read_trec(a.bm25), read_trec(a.dense), a.method, a.depth, weight=weight, rrf_k=a.rrf_k)
    log.info("%s fusion (weight %s, rrf_k %d): %d queries", a.method, weight, a.rrf_k, fused["qid"].nunique())
    write_trec_frame(a.out, fused, tag=a.tag)


def _fusion_weight(a: argparse.Namespace) -> None:
    import pandas as pd

    from dr_core.atomic import write_json
    from dr_core.fusion import tune_weight
    from dr_core.runs import read_trec

    result = tune_weight(read_trec(a.bm25), read_trec(a.dense), pd.read_parquet(a.qrels), a.depth)
    log.info("convex weight %.2f: %s %.4f on %d queries", *(result[k] for k in ("weight", "metric", "best", "queries")))
    write_json(result, a.out)


def _model_card(a: argparse.Namespace) -> None:
    from dr_core.card_metrics import write_metrics_card

    write_metrics_card(a.model, a.metrics, a.command, a.out)


def _push_to_hub(a: argparse.Namespace) -> None:
    from dr_core.hub import push_model

    push_model(a.model, a.card, a.repo_id, a.out, private=a.private, token_env=a.token_env)


def _try(a: argparse.Namespace) -> None:
    import time
    from functools import partial

    import pandas as pd

    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # which CPU build it loads: noise at a prompt
    from dr_core.errors import MissingPathError
    from dr_core.runs import write_trec_frame
    from dr_core.tryout import (
        RoundSearcher,
        check_corpus,
        check_round,
        check_run_dir,
        format_hits,
        fusion_weight,
        hits_of,
        read_queries_file,
        system_run,
    )

    # every path the command was given, checked before anything loads: one line saying what exists instead
    check_run_dir(a.run_dir)
    if a.system != "bm25":
        if a.round is None:
            raise ValueError(f"--system {a.system} needs --round")
        check_round(a.run_dir, a.round, a.dataset, a.model or None)
    corpus = check_corpus(a.run_dir, a.dataset)
    if a.queries_file and not Path(a.queries_file).is_file():
        raise MissingPathError(f"--queries-file {a.queries_file}: no such file")
    weight = fusion_weight(a.run_dir, a.round, a.weight) if a.system == "hybrid" else None
    t0 = time.time()
    dense = None
    if a.system != "bm25":
        dense = RoundSearcher(a.run_dir, a.round, a.dataset, a.model or None, nprobe=a.nprobe)
        log.info(
            "round %d, %s: %d passages, loaded in %.1f s", a.round, a.dataset, dense.index.ntotal, time.time() - t0
        )
    search = partial(system_run, a.system, corpus=corpus, dense=dense, weight=weight, depth=a.depth)
    if a.queries_file:
        run = search(read_queries_file(a.queries_file), a.k)
        if a.out:
            tag = {"dense": f"round{a.round}", "bm25": "bm25", "hybrid": f"bm25+round{a.round}"}[a.system]
            write_trec_frame(a.out, run, tag)
            log.info("%d queries, %d lines: %s", run["qid"].nunique(), len(run), a.out)
            return
        for qid, ranking in run.groupby("qid", sort=False):
            print(f"\n{qid}\n{format_hits(hits_of(ranking, corpus))}", flush=True)
        return
    if a.out:
        raise ValueError("--out writes the run of a --queries-file")
    for query in a.query or _typed_queries():
        ranking = search(pd.DataFrame({"qid": ["q"], "text": [query]}), a.k)
        print(f"\n{query}\n{format_hits(hits_of(ranking, corpus))}", flush=True)


def _typed_queries():
    """Queries typed at a prompt, until an empty line or end of input."""
    while True:
        try:
            query = input("query> ").strip()
        except EOFError:
            return
        if not query:
            return
        yield query


def _split_queries(queries_path: str, qrels_path: str):
    """The queries judged in a split's qrels, sorted by qid."""
    import pandas as pd

    qids = set(pd.read_parquet(qrels_path)["qid"])
    queries = pd.read_parquet(queries_path)
    return queries[queries["qid"].isin(qids)].sort_values("qid", ignore_index=True)


def build_parser() -> argparse.ArgumentParser:
    """`dr_core <command> ...`: a command per workflow step, grouped by stage; every setting is a flag."""
    p = argparse.ArgumentParser(prog="dr_core", description=__doc__)
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=SettingsParser)
    _add_data_commands(sub)
    _add_msmarco_commands(sub)
    _add_negatives_commands(sub)
    _add_training_commands(sub)
    _add_reranker_commands(sub)
    _add_retrieval_commands(sub)
    _add_evaluation_commands(sub)
    _add_selection_commands(sub)
    _add_sharing_commands(sub)
    return p


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    """Download, validate and tokenize collections (BEIR, LoTTE)."""
    s = sub.add_parser("acquire", help="download and unpack a BEIR dataset zip")
    s.add_argument("--url", required=True)
    s.add_argument("--md5")
    s.add_argument("--cache-dir", required=True, help="where the zip is kept")
    s.add_argument("--out-dir", required=True)
    s.set_defaults(func=_acquire)

    s = sub.add_parser("prepare", help="validate a BEIR corpus and queries, write Parquet")
    s.add_argument("--src", required=True)
    s.add_argument("--out-dir", required=True)
    s.add_argument("--empty-docs", choices=["error", "drop"], default="error")
    s.set_defaults(func=_prepare)

    s = sub.add_parser("qrels", help="validate one split's qrels, write Parquet")
    for name in ("--src", "--split", "--corpus", "--queries", "--out"):
        s.add_argument(name, required=True)
    s.add_argument("--empty-docs", choices=["error", "drop"], default="error")
    s.add_argument(
        "--dev-keep", choices=["dev", "train"], help="carve a dev split from --split: write its queries, or the rest"
    )
    s.add_argument("--dev-share", type=float, help="share of the split's queries carved into the dev split")
    s.add_argument("--dev-count", type=int, help="number of the split's queries carved into the dev split")
    s.add_argument("--dev-seed", type=int, default=0)
    s.set_defaults(func=_qrels)

    s = sub.add_parser("lotte", help="LoTTE: fetch the release, or validate one domain/split/query set to Parquet")
    s.add_argument("step", choices=["fetch", "prepare", "qrels"])
    for name in ("--src", "--out-dir", "--cache-dir", "--domain", "--split", "--query-set"):
        s.add_argument(name)
    for name in ("--corpus", "--queries", "--out"):
        s.add_argument(name)
    s.set_defaults(func=_lotte)

    s = sub.add_parser(
        "tevatron",
        help="Tevatron-format datasets (Hub name or .jsonl/.json/.parquet): corpus; one split's groups -> qrels "
        "(--out), queries and negatives; the splits' queries merged",
    )
    s.add_argument("step", choices=["corpus", "groups", "queries"])
    s.add_argument("--src", help="corpus, groups: a Hub dataset owner/name[/split] or a .jsonl/.json/.parquet file")
    s.add_argument("--cache-dir", help="corpus, groups: where datasets caches what it reads (default: its own)")
    s.add_argument("--corpus", help="groups: the corpus Parquet (every docid must be in it)")
    s.add_argument("--queries-out", help="groups: the split's queries Parquet")
    s.add_argument("--negatives-out", help="groups: the split's negatives (qid<TAB>pid,...)")
    s.add_argument("--judgements", help="groups: a TREC qrels file that judges the split instead of its positives")
    s.add_argument("--query-files", nargs="+", help="queries: the splits' queries Parquet files")
    s.add_argument("--out", required=True, help="corpus.parquet; groups: the split's qrels; queries.parquet")
    s.set_defaults(func=_tevatron)

    s = sub.add_parser("tokenize", help="tokenize a corpus or queries Parquet file")
    for name in ("--model", "--src", "--out", "--id-column"):
        s.add_argument(name, required=True)
    s.add_argument("--max-len", type=int, required=True)
    s.add_argument("--template", default="", help="query or passage template ('' = the text as it is)")
    s.add_argument("--untitled-template", default="{text}", help="passages without a title")
    s.add_argument("--batch-size", type=int, default=10_000)
    s.set_defaults(func=_tokenize)


def _add_msmarco_commands(sub: argparse._SubParsersAction) -> None:
    """MS MARCO's raw files, the title join, negatives from the triples, Parquet tables and runs."""
    s = sub.add_parser("fetch-msmarco", help="download one raw MS MARCO file (from its archive when it ships in one)")
    s.add_argument("--name", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--archive-dir", required=True, help="where downloaded archives are kept")
    s.set_defaults(func=_fetch)

    s = sub.add_parser("msmarco", help="MS MARCO steps: join titles, negatives from triples, Parquet, runs")
    s.add_argument("step", choices=["join", "triples", "corpus", "queries", "qrels", "run"])
    s.add_argument("--para", help="join: para.txt (pid<TAB>text)")
    s.add_argument("--titles", help="join: para.title.txt (pid<TAB>title)")
    s.add_argument("--triples", help="triples: qidpidtriples.train.full.2.tsv(.gz)")
    s.add_argument("--corpus-tsv", help="corpus: the joined corpus.tsv (pid<TAB>title<TAB>text)")
    s.add_argument("--query-files", nargs="+", help="queries: query files (qid<TAB>text), e.g. train and dev")
    s.add_argument("--qrels", help="qrels: an MS MARCO qrels file")
    s.add_argument("--corpus", help="qrels: the corpus Parquet (the judged passages must be in it)")
    s.add_argument("--queries", help="qrels: the queries Parquet (the judged queries must be in it)")
    s.add_argument("--run", help="run: a TREC run, written in the MS MARCO format")
    s.add_argument("--out", required=True)
    s.set_defaults(func=_msmarco)


def _add_negatives_commands(sub: argparse._SubParsersAction) -> None:
    """Hard negatives: mined from a run, read from a file, denoised with teacher scores."""
    s = sub.add_parser("mine", help="sample hard negatives from a run")
    for name in ("--run", "--qrels", "--out"):
        s.add_argument(name, required=True)
    s.add_argument("--rank-min", type=int, required=True)
    s.add_argument("--rank-max", type=int, required=True)
    s.add_argument("--n", type=int, required=True)
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--bm25-fraction", type=float, default=0.0, help="share of the n negatives from --bm25-run")
    s.add_argument("--bm25-run", help="BM25 run of the same queries (with --bm25-fraction > 0)")
    s.add_argument("--bm25-rank-min", type=int, default=1)
    s.add_argument("--bm25-rank-max", type=int, default=100)
    s.add_argument("--positive-scores", help="qid, docid, score of the judged positives under the mining model")
    s.add_argument("--filter-relative", type=float, help="drop candidates scored above this times the weakest positive")
    s.add_argument("--filter-margin", type=float, help="drop candidates scored within this of the weakest positive")
    s.set_defaults(func=_mine)

    s = sub.add_parser("positive-scores", help="a bi-encoder's score of each judged positive (for the mine filter)")
    for name in ("--model", "--query-tokens", "--qrels", "--out"):
        s.add_argument(name, required=True)
    s.add_argument("--shards", nargs="+", required=True, help="corpus shards as pairs: emb.npy ids.txt ...")
    s.add_argument("--max-len", type=int, default=0, help="query length (0: the model's)")
    s.set_defaults(func=_positive_scores)

    s = sub.add_parser("positive-scores-bm25", help="BM25's score of each judged positive (for the mine filter)")
    for name in ("--corpus", "--queries", "--qrels", "--out"):
        s.add_argument(name, required=True)
    s.add_argument("--k1", type=float, default=1.5)
    s.add_argument("--b", type=float, default=0.75)
    s.add_argument("--stemmer", default="english")
    s.add_argument("--stopwords", default="en")
    s.set_defaults(func=_positive_scores_bm25)

    s = sub.add_parser(
        "negatives-file",
        help="round-1 negatives from a given file: qid<TAB>pid,pid,..., Tevatron train jsonl or sentence-transformers "
        "hard negatives jsonl.gz",
    )
    s.add_argument("--src", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=_negatives_file)

    s = sub.add_parser("teacher-scores", help="score each train query's positives and negatives with a teacher")
    for name in ("--model", "--queries", "--corpus", "--qrels", "--negatives", "--out"):
        s.add_argument(name, required=True)
    s.add_argument(
        "--kind", choices=["auto", "cross", "bi"], default="auto", help="auto: cross for *ForSequenceClassification"
    )
    s.add_argument("--template", default="Title: {title} Text: {text}")
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--q-max-len", type=int, default=32, help="bi-encoder query length")
    s.add_argument("--max-len", type=int, default=256, help="passage (bi) or pair (cross) length")
    s.add_argument("--model-key", default="distill.teacher", help="the config key of --model, for errors")
    s.set_defaults(func=_teacher_scores)

    s = sub.add_parser("denoise", help="drop negatives the teacher scores within a margin of the positive")
    for name in ("--negatives", "--teacher-scores", "--qrels", "--out"):
        s.add_argument(name, required=True)
    s.add_argument("--margin", type=float, default=None, help="drop if score > weakest positive's - margin")
    s.add_argument("--max-score", type=float, default=None, help="drop if score > this")
    s.set_defaults(func=_denoise)


def _add_training_commands(sub: argparse._SubParsersAction) -> None:
    """The bi-encoder: round 0 from a base model, the query clusters of DRO, and training a round."""
    s = sub.add_parser(
        "init-model", help="save a base model as a bi-encoder (round 0)", settings={"": "dr_core.model:EncoderSpec"}
    )
    s.add_argument("--base", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--card", default="", help=CARD_HELP)
    s.set_defaults(func=_init_model)

    s = sub.add_parser("merge-models", help="WiSE-FT: interpolate a trained bi-encoder's weights with its base's")
    s.add_argument("--base", required=True, help="the base bi-encoder folder (round 0)")
    s.add_argument("--tuned", required=True, help="the trained bi-encoder folder (same architecture and spec)")
    s.add_argument("--alpha", type=float, required=True, help="merge.alpha: 0 = the base, 1 = the tuned model")
    s.add_argument("--out", required=True)
    s.set_defaults(func=_merge_models)

    s = sub.add_parser("scale-t5", help="scale a T5's weights as OpenMatch's scale_t5_weights.py (for fp16 training)")
    s.add_argument("--base", required=True, help="a T5 hub name or path (ReLU feed-forward: t5-small/base/large)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=_scale_t5)

    s = sub.add_parser("cluster", help="k-means over the train queries' embeddings (DRO groups)")
    for name in ("--model", "--query-tokens", "--qrels", "--out"):
        s.add_argument(name, required=True)
    s.add_argument("--num-clusters", type=int, required=True)
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--batch-size", type=int, default=256)
    s.set_defaults(func=_cluster)

    training = {"": "dr_core.train:TrainSettings", "dro": "dr_core.dro:DroSettings"}
    s = sub.add_parser("train", help="train one round", settings=training)
    for name in ("--init", "--queries", "--corpus", "--qrels", "--negatives", "--out", "--log", "--checkpoint-dir"):
        s.add_argument(name, required=True)
    s.add_argument("--teacher-scores", default="", help="Parquet (qid, pid, score) or sentence-transformers .pkl.gz")
    s.add_argument("--clusters", default="", help="query clusters (qid<TAB>cluster) for DRO")
    s.add_argument("--card", default="", help=CARD_HELP)
    s.set_defaults(func=_train)


def _add_reranker_commands(sub: argparse._SubParsersAction) -> None:
    """The cross-encoder: training it and re-scoring the top of a run."""
    s = sub.add_parser(
        "train-reranker",
        help="train a cross-encoder on a round's groups (listwise cross-entropy)",
        settings={"": "dr_core.reranker:RerankerSettings"},
    )
    for name in ("--base", "--queries", "--corpus", "--qrels", "--negatives", "--out", "--log", "--checkpoint-dir"):
        s.add_argument(name, required=True)
    s.add_argument("--template", default="Title: {title} Text: {text}")
    s.set_defaults(func=_train_reranker)

    s = sub.add_parser("rerank", help="re-score the top of a run with a cross-encoder")
    for name in ("--model", "--run", "--queries", "--corpus", "--out", "--tag"):
        s.add_argument(name, required=True)
    s.add_argument("--depth", type=int, required=True, help="documents re-scored per query")
    s.add_argument("--template", default="Title: {title} Text: {text}")
    s.add_argument("--batch-size", type=int, default=64, help="pairs per forward pass")
    s.add_argument("--max-len", type=int, default=256, help="pair length")
    s.add_argument("--model-key", default="reranker.model", help="the config key of --model, for errors")
    s.set_defaults(func=_rerank)


def _add_retrieval_commands(sub: argparse._SubParsersAction) -> None:
    """Runs: BM25, and dense retrieval (encode the corpus, build the index, search it)."""
    s = sub.add_parser("bm25", help="BM25 top-k for the queries of a split")
    for name in ("--corpus", "--queries", "--qrels", "--out"):
        s.add_argument(name, required=True)
    s.add_argument("--k", type=int, default=1000)
    s.add_argument("--k1", type=float, default=1.5)
    s.add_argument("--b", type=float, default=0.75)
    s.add_argument("--stemmer", default="english")
    s.add_argument("--stopwords", default="en")
    s.set_defaults(func=_bm25)

    s = sub.add_parser("encode", help="embed one corpus shard")
    for name in ("--model", "--tokens", "--emb-out", "--ids-out"):
        s.add_argument(name, required=True)
    s.add_argument("--shard", type=int, required=True)
    s.add_argument("--num-shards", type=int, required=True)
    s.add_argument("--batch-size", type=int, default=128)
    s.add_argument("--max-len", type=int, default=0)
    s.add_argument("--fp16", action="store_true", help="store the embeddings in float16")
    s.set_defaults(func=_encode)

    s = sub.add_parser("index", help="build a faiss index over a round's corpus embedding shards")
    for name in ("--model", "--out", "--meta-out"):
        s.add_argument(name, required=True)
    s.add_argument("--shards", nargs="+", required=True, help="emb.npy ids.txt pairs")
    s.add_argument("--factory", default="auto", help="faiss index_factory string, or auto")
    s.add_argument("--memory-gb", type=float, default=16.0, help="memory the auto choice may fill")
    s.add_argument("--seed", type=int, default=42, help="seed of the training sample")
    s.add_argument("--train-size", type=int, default=0, help="training sample (0: 64 vectors per IVF list)")
    s.set_defaults(func=_index)

    s = sub.add_parser("retrieve", help="encode a split's queries in batches and search a round's index")
    for name in ("--model", "--query-tokens", "--qrels", "--index", "--index-meta", "--out", "--tag"):
        s.add_argument(name, required=True)
    s.add_argument("--ids", nargs="+", required=True, help="the shards' ids files, in the index's row order")
    s.add_argument("--k", type=int, default=1000)
    s.add_argument("--batch-size", type=int, default=256, help="queries encoded at a time")
    s.add_argument("--query-batch", type=int, default=8192, help="queries searched (and held) at a time")
    s.add_argument("--max-len", type=int, default=0)
    s.add_argument("--nprobe", type=int, help="IVF lists probed (index.nprobe)")
    s.add_argument("--ef-search", type=int, help="HNSW efSearch (index.ef_search)")
    s.add_argument("--gpu-fp16", action="store_true", help="fp16 storage of the index on GPUs")
    s.set_defaults(func=_retrieve)


def _add_evaluation_commands(sub: argparse._SubParsersAction) -> None:
    """Hybrid runs (fusion), metrics and the summary tables."""
    s = sub.add_parser("fusion-weight", help="tune the convex fusion weight on a split's judged queries")
    for name in ("--bm25", "--dense", "--qrels", "--out"):
        s.add_argument(name, required=True)
    s.add_argument("--depth", type=int, default=100, help="each run is cut to this depth first")
    s.set_defaults(func=_fusion_weight)

    s = sub.add_parser("fuse", help="fuse a BM25 run with a dense run (convex sum of min-max scores, or RRF)")
    for name in ("--bm25", "--dense", "--out", "--tag"):
        s.add_argument(name, required=True)
    s.add_argument("--method", choices=["convex", "rrf"], required=True)
    s.add_argument("--weight", type=float, help="dense weight of the convex sum")
    s.add_argument("--weight-file", help="JSON with the tuned 'weight' (from fusion-weight)")
    s.add_argument("--rrf-k", type=int, default=60)
    s.add_argument("--depth", type=int, default=100, help="each run is cut to this depth first")
    s.set_defaults(func=_fuse)

    s = sub.add_parser("evaluate", help="score a run with pytrec_eval")
    for name in ("--run", "--qrels", "--out", "--system", "--dataset", "--split"):
        s.add_argument(name, required=True)
    s.add_argument("--metrics", nargs="+", required=True)
    s.set_defaults(func=_evaluate)

    s = sub.add_parser("summarize", help="one table from metrics JSON files")
    s.add_argument("--metrics", nargs="+", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--beir-out", default="", help="also a system x dataset table of one metric, with its mean")
    s.add_argument("--beir-metric", default="ndcg@10")
    s.add_argument(
        "--baselines", nargs="+", default=["bm25", "round0"], help="systems every other system is tested against"
    )
    s.add_argument("--metric", default="ndcg@10", help="the metric tested (absent: the first metric column)")
    s.add_argument("--alpha", type=float, default=0.05, help="significance level of the Holm-adjusted p-values")
    s.set_defaults(func=_summarize)


def _round_decision(a: argparse.Namespace) -> None:
    from dr_core.atomic import write_json
    from dr_core.selection import dev_values, keep_training, select_round

    values = dev_values(a.metrics, a.metric)
    go = keep_training(values, a.max_rounds, a.patience, a.min_delta)
    log.info("%s on dev by round: %s; train round %d: %s", a.metric, values, len(values), go)
    rule = {"max": a.max_rounds, "patience": a.patience, "min_delta": a.min_delta}
    write_json(
        {"continue": go, "metric": a.metric, "dev": values, "best_round": select_round(values), "rule": rule}, a.out
    )


def _select_round(a: argparse.Namespace) -> None:
    from dr_core.atomic import write_json
    from dr_core.selection import dev_values, select_round

    values = dev_values(a.metrics, a.metric)
    chosen = select_round(values)
    log.info("%s on dev by round: %s; selected round %d", a.metric, values, chosen)
    write_json({"round": chosen, "metric": a.metric, "dev": values, "files": a.metrics}, a.out)


def _select_run(a: argparse.Namespace) -> None:
    from dr_core.runs import read_trec, write_trec_frame

    write_trec_frame(a.out, read_trec(a.run), a.tag)


def _add_selection_commands(sub: argparse._SubParsersAction) -> None:
    """Choices on dev: whether to train another round, the selected round and its runs."""
    s = sub.add_parser("round-decision", help="train another round? (the dev metric of rounds 0..r, ance.rounds' rule)")
    s.add_argument("--metrics", nargs="+", required=True, help="dev metrics JSON of rounds 0..r, in order")
    s.add_argument("--metric", required=True)
    s.add_argument("--max-rounds", type=int, required=True)
    s.add_argument("--patience", type=int, required=True)
    s.add_argument("--min-delta", type=float, required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=_round_decision)

    s = sub.add_parser("select-round", help="the round with the best dev metric (ties to the earlier)")
    s.add_argument("--metrics", nargs="+", required=True, help="dev metrics JSON of rounds 0..R, in order")
    s.add_argument("--metric", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=_select_round)

    s = sub.add_parser("select-run", help="a run file retagged (the selected round's run as system `selected`)")
    for name in ("--run", "--tag", "--out"):
        s.add_argument(name, required=True)
    s.set_defaults(func=_select_run)


def _add_sharing_commands(sub: argparse._SubParsersAction) -> None:
    """A model's card, its upload to the Hub, and trying a round on typed queries."""
    s = sub.add_parser("model-card", help="a saved model's card with its evaluation metrics and reproducing command")
    for name in ("--model", "--out", "--command"):
        s.add_argument(name, required=True)
    s.add_argument("--metrics", nargs="+", required=True, help="the model's metrics JSON files (dr_core evaluate)")
    s.set_defaults(func=_model_card)

    s = sub.add_parser("push-to-hub", help="upload a model folder to the Hugging Face Hub, its card as README.md")
    for name in ("--model", "--card", "--repo-id", "--out"):
        s.add_argument(name, required=True)
    s.add_argument("--private", action="store_true")
    s.add_argument("--token-env", default="HF_TOKEN", help="the environment variable holding the token")
    s.set_defaults(func=_push_to_hub)

    s = sub.add_parser("try", help="search a round's corpus for typed queries (a prompt when none is given)")
    s.add_argument("query", nargs="*")
    s.add_argument("--run-dir", required=True, help="results/<name>")
    s.add_argument("--round", type=int, help="the round searched (not needed for --system bm25)")
    s.add_argument("--dataset", required=True)
    s.add_argument("--model", default="", help="another model folder (default: the round's)")
    s.add_argument("-k", type=int, default=10)
    s.add_argument("--system", choices=["dense", "bm25", "hybrid"], default="dense")
    s.add_argument("--weight", type=float, help="hybrid's dense weight (default: the tuned bm25+round<r>/fusion.json)")
    s.add_argument("--depth", type=int, default=100, help="hybrid: both runs are cut to this depth first")
    s.add_argument("--nprobe", type=int, help="IVF lists searched (default: nlist / 64, as retrieve)")
    s.add_argument("--queries-file", default="", help="a TSV of 'qid<TAB>query' lines instead of typed queries")
    s.add_argument("--out", default="", help="with --queries-file: write the TREC run here instead of printing")
    s.set_defaults(func=_try)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from dr_core.errors import DataError, MissingPathError, WriteError

    try:
        args.func(args)
        _record_provenance(args)
    except WriteError as e:  # a full disk, a quota, a permission: one line naming the output, no traceback
        log.error("%s", e)
        return 1
    except (DataError, ValueError, FileNotFoundError) as e:
        log.error("%s", e, exc_info=not isinstance(e, (DataError, MissingPathError)))
        return 1
    return 0


def _record_provenance(args: argparse.Namespace) -> None:
    """Write the step's arguments (settings, seeds) and the library version beside its main output."""
    from dr_core.atomic import write_provenance
    from dr_core.fingerprint import step_of

    target = next((getattr(args, k) for k in ("out", "out_dir", "emb_out") if getattr(args, k, None)), None)
    if target is not None and Path(target).exists():
        params = {k: v for k, v in vars(args).items() if k != "func"}
        write_provenance(target, params, step_of(args.func.__name__))
