# Where results go: every results file's path is a dr_core.layout function (the library reads the same tree) under
# the recipe's results folder OUT; called without values, a layout function gives the rules' wildcard pattern.
import dr_core.layout as layout

OUT = f"{config['results_dir']}/{config['name']}"


def out(path):
    """A results file: `path` (a dr_core.layout path) under the recipe's results folder."""
    return f"{OUT}/{path}"


def log_path(*parts):
    """A job's log under the results folder (dr_core.layout.log)."""
    return out(layout.log(*parts))


def benchmark_path(*parts):
    """A job's benchmark table under the results folder (dr_core.layout.benchmark)."""
    return out(layout.benchmark(*parts))


# The train target's tables, read by the negatives, training, teacher and reranker rules.
TRAIN_CORPUS = out(layout.corpus(TRAIN_DS))
TRAIN_QUERIES = out(layout.queries(TRAIN_DS))
TRAIN_QRELS = out(layout.qrels(TRAIN_DS, TRAIN_SPLIT))
TRAIN_QUERY_TOKENS = out(layout.tokens(TRAIN_DS, "queries"))
TRAIN_CORPUS_TOKENS = out(layout.tokens(TRAIN_DS, "corpus"))
# The cross-encoder the workflow trains (reranker.*) unless reranker.model names one.
TRAINED_RERANKER = out(layout.model("reranker"))
