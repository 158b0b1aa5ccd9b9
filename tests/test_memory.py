"""pairio.Memory, a drop-in for joblib.Memory: scikit-learn's own tests, Pipelines, nilearn, joblib.Parallel."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import types
import warnings

import numpy as np
import pytest

import pairio

joblib = pytest.importorskip("joblib")
sklearn_pipeline_tests = pytest.importorskip("sklearn.tests.test_pipeline")

from sklearn.base import BaseEstimator, TransformerMixin  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

MEMORY_TESTS = sorted(n for n in dir(sklearn_pipeline_tests) if n.startswith("test_") and "memory" in n)


@pytest.mark.parametrize("name", MEMORY_TESTS)
def test_scikit_learn_pipeline_memory_tests_pass_with_pairio_memory(name, monkeypatch, tmp_path):
    # The tests build their cache as ``joblib.Memory(location=...)``: that name resolves to pairio's.
    fake = types.SimpleNamespace(**{k: getattr(joblib, k) for k in dir(joblib) if not k.startswith("__")})
    fake.Memory = pairio.Memory
    monkeypatch.setattr(sklearn_pipeline_tests, "joblib", fake)
    # The tests remove their cache directory with shutil.rmtree while pairio's background writer
    # may still be writing the calls' counts into it (a file made mid-removal fails it with "Directory
    # not empty"): the queued writes are drained first, as a program removing a live store should.
    import shutil

    from pairio.deferred import drain_all

    def rmtree(path, *args, **kwargs):
        drain_all()
        shutil.rmtree(path, *args, **kwargs)

    monkeypatch.setattr(sklearn_pipeline_tests, "shutil", types.SimpleNamespace(rmtree=rmtree))
    monkeypatch.chdir(tmp_path)
    test = getattr(sklearn_pipeline_tests, name)
    import inspect

    params = inspect.signature(test).parameters
    kwargs = {}
    if "tmp_path" in params:
        kwargs["tmp_path"] = tmp_path
    if "global_random_seed" in params:
        kwargs["global_random_seed"] = 0
    test(**kwargs)


def test_memory_is_a_joblib_memory_and_import_pairio_does_not_load_joblib():
    assert isinstance(pairio.Memory(None), joblib.Memory)
    out = subprocess.run([sys.executable, "-c", "import pairio, sys; print('joblib' in sys.modules)"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


class CountingScaler(TransformerMixin, BaseEstimator):
    """A user transformer that counts its fits in a file (so fresh processes count too)."""

    def __init__(self, log=None):
        self.log = log

    def fit(self, X, y=None):
        with open(self.log, "a") as f:
            f.write("fit\n")
        self.mean_ = X.mean(axis=0)
        return self

    def transform(self, X):
        return X - self.mean_


def _data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    return X, (X[:, 0] > 0).astype(int)


def _fits(log):
    return log.read_text().count("fit") if log.exists() else 0


def test_cached_pipeline_second_fit_does_not_refit_transformers(tmp_path):
    log = tmp_path / "fits.txt"
    X, y = _data()
    memory = pairio.Memory(tmp_path / "store", verbose=0)
    Pipeline([("s", CountingScaler(str(log))), ("c", LogisticRegression(C=1.0))], memory=memory).fit(X, y)
    assert _fits(log) == 1
    pipe = Pipeline([("s", CountingScaler(str(log))), ("c", LogisticRegression(C=1.0))], memory=memory).fit(X, y)
    assert _fits(log) == 1
    pipe.set_params(c__C=0.5).fit(X, y)  # only the final estimator changes: it refits, the transformer does not
    assert _fits(log) == 1
    assert pipe.named_steps["c"].C == 0.5


def test_cached_pipeline_fit_in_a_fresh_process_is_a_hit(tmp_path):
    log = tmp_path / "fits.txt"
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(__import__('os').path.dirname(__file__))!r})
        import pairio
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from test_memory import CountingScaler, _data
        X, y = _data()
        memory = pairio.Memory({str(tmp_path / 'store')!r}, verbose=0)
        Pipeline([("s", CountingScaler({str(log)!r})), ("c", LogisticRegression())], memory=memory).fit(X, y)
    """)
    for _ in range(2):
        subprocess.run([sys.executable, "-c", script], check=True)
    assert _fits(log) == 1


def test_memory_none_runs_every_time_and_cache_api(tmp_path):
    calls = []

    def square(x, verbose=False):
        calls.append(x)
        return x * x

    off = pairio.Memory(None).cache(square)
    assert off(3) == 9 and off(3) == 9 and len(calls) == 2
    mem = pairio.Memory(tmp_path / "s", verbose=0)
    f = mem.cache(ignore=["verbose"])(square)
    calls.clear()
    assert f(4) == 16 and f(4, verbose=True) == 16 and calls == [4]
    out, meta = f.call(4)
    assert out == 16 and "duration" in meta and "time" in meta
    assert f.check_call_in_cache(4) and not f.check_call_in_cache(5)
    shelved = f.call_and_shelve(5)
    assert shelved.get() == 25
    shelved.clear()
    assert not f.check_call_in_cache(5)
    assert f.func is square and len(f.key(4)) == 40
    assert mem.eval(square, 6) == 36
    f.clear()
    assert not f.is_cached(4)


def test_expires_after_validation_callback_recomputes(tmp_path):
    calls = []

    def inc(x):
        calls.append(x)
        return x + 1

    f = pairio.Memory(tmp_path / "s", verbose=0).cache(inc, cache_validation_callback=joblib.expires_after(seconds=0))
    f(1)
    f(1)
    assert calls == [1, 1]


def _slow_double(x, log):
    with open(log, "a") as fh:
        fh.write(f"{x}\n")
    return 2 * x


def test_joblib_parallel_computes_each_key_once(tmp_path):
    log = tmp_path / "calls.txt"
    f = pairio.Memory(tmp_path / "s", verbose=0).cache(_slow_double)
    xs = [1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4]  # each key asked for by both workers, at once
    first = joblib.Parallel(n_jobs=2)(joblib.delayed(f)(x, str(log)) for x in xs)
    second = joblib.Parallel(n_jobs=2)(joblib.delayed(f)(x, str(log)) for x in xs)
    assert first == second == [2 * x for x in xs]
    assert sorted(log.read_text().split()) == ["1", "2", "3", "4"]


def test_nilearn_nifti_masker_caches_with_pairio_memory(tmp_path):
    nib = pytest.importorskip("nibabel")
    maskers = pytest.importorskip("nilearn.maskers")
    rng = np.random.default_rng(0)
    img = nib.Nifti1Image(rng.normal(size=(6, 6, 6, 4)).astype("float32"), np.eye(4))
    mask = nib.Nifti1Image(np.ones((6, 6, 6), dtype="uint8"), np.eye(4))
    memory = pairio.Memory(tmp_path / "s", verbose=0)
    a = maskers.NiftiMasker(mask_img=mask, memory=memory, memory_level=2, smoothing_fwhm=2.0).fit_transform(img)
    from pairio.lifecycle import queries

    with pairio.config(database_path=str(tmp_path / "s")):
        assert queries.entries(), "nilearn's cached steps stored nothing"
    b = maskers.NiftiMasker(mask_img=mask, memory=memory, memory_level=2, smoothing_fwhm=2.0).fit_transform(img)
    np.testing.assert_array_equal(a, b)


def test_another_machines_pipeline_fit_is_all_remote_hits_for_a_reader_who_trusts_it(tmp_path):
    # A fitted estimator is code as well as data (scikit-learn's own __setstate__ runs when it
    # loads): a teammate's is loaded only from a writer the reader trusts; untrusted, it is refit here.
    from server_process import RW_PASSWORD, ServerProcess, default_settings

    from pairio.identity import load_identity

    log = tmp_path / "fits.txt"
    X, y = _data()
    with ServerProcess(tmp_path / "server", default_settings()) as server:
        def machine(home, **fields):
            return pairio.Memory(pairio.Config(
                url=server.url, channel="lab-rw", password=RW_PASSWORD, collection="spikes",
                database_path=str(tmp_path / home), get_from="local_then_remote", set_to="local_and_remote",
                writer_name=f"{home}@lab", **fields), verbose=0)

        def fit(memory):
            steps = [("a", CountingScaler(str(log))), ("b", StandardScaler()), ("c", LogisticRegression())]
            return Pipeline(steps, memory=memory).fit(X, y)

        a = fit(machine("a"))
        assert _fits(log) == 1
        pairio.reset_stats()
        writer = load_identity(tmp_path / "a" / "identity", "a@lab").public_key
        b = fit(machine("b", trusted_writers=[writer]))  # its own store, empty: all from the server
        assert _fits(log) == 1
        counts = {k: v for k, v in pairio.stats().items() if "_fit_transform_one" in k}
        assert counts, pairio.stats()
        assert all(v["hits"] == v["remote_hits"] == 2 and v["misses"] == 0 for v in counts.values()), counts
        np.testing.assert_array_equal(a.predict(X), b.predict(X))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "not trusted here ... computed here instead"
            fit(machine("untrusting"))
        assert _fits(log) == 2


# --- joblib's metadata, verbose lines, reduce_size -------------------------------------------


def _scaled(x, factor=2, *rest, verbose=False, **options):
    return x * factor


def test_call_computes_again_and_returns_joblibs_metadata(tmp_path):
    calls = []

    def square(x, power=2, verbose=False):
        calls.append(x)
        return x ** power

    mine = pairio.Memory(tmp_path / "p", verbose=0).cache(square, ignore=["verbose"])
    theirs = joblib.Memory(tmp_path / "j", verbose=0).cache(square, ignore=["verbose"])
    assert mine(3) == 9 and calls == [3]
    out, meta = mine.call(3, verbose=True)  # as joblib's call: computed even though it is cached
    assert out == 9 and calls == [3, 3]
    assert meta["input_args"] == theirs.call(3, verbose=True)[1]["input_args"] == {"x": "3", "power": "2"}
    assert meta["duration"] >= 0 and abs(meta["time"] - __import__("time").time()) < 600
    variadic = [pairio.Memory(tmp_path / "p2", verbose=0), joblib.Memory(tmp_path / "j2", verbose=0)]
    a, b = (m.cache(_scaled, ignore=["verbose"]).call(np.arange(3), 3, 4, 5, verbose=True, depth=2)[1] for m in variadic)
    assert a["input_args"] == b["input_args"] and a["input_args"]["*"] == "[4, 5]"


def test_the_validation_callback_is_given_the_stored_calls_metadata(tmp_path):
    seen = []

    def keep(meta):
        seen.append(meta)
        return True

    f = pairio.Memory(tmp_path / "s", verbose=0).cache(_scaled, ignore=["verbose"], cache_validation_callback=keep)
    assert f(2, verbose=True) == 4 and seen == []  # nothing stored: nothing to validate
    assert f(2) == 4
    (meta,) = seen
    assert meta["input_args"] == {"x": "2", "factor": "2", "*": "[]", "**": "{}"}
    assert meta["duration"] >= 0 and meta["time"] > 0


def test_verbose_logs_joblibs_lines_through_the_pairio_logger(tmp_path, caplog):
    caplog.set_level("INFO", logger="pairio")

    def lines():
        out = [r.getMessage() for r in caplog.records if r.name == "pairio" and "[Memory]" in r.getMessage()]
        caplog.clear()
        return out

    quiet = pairio.Memory(tmp_path / "q", verbose=0).cache(_scaled)
    quiet(1), quiet(1)
    assert lines() == []
    f = pairio.Memory(tmp_path / "v", verbose=1).cache(_scaled)
    assert f(3, factor=5) == 15
    calling, took = lines()
    assert calling.startswith("[Memory] Calling ") and "_scaled..." in calling and calling.endswith("_scaled(3, factor=5)")
    assert took.startswith("[Memory] _scaled - ") and took.endswith("min")
    assert f(3, factor=5) == 15 and lines() == []  # a hit says nothing at verbose=1, as in joblib
    loud = pairio.Memory(tmp_path / "v", verbose=5).cache(_scaled)
    assert loud(3, factor=5) == 15
    (loaded,) = lines()
    assert loaded.startswith("[Memory] _scaled cache loaded - ")
    assert pairio.Memory(tmp_path / "v", verbose=5).cache(_scaled, verbose=0)(3, factor=5) == 15 and lines() == []


def _blob(n, tag):
    return np.full(n, tag, dtype=np.uint8)


def _entries(memory):
    from pairio.lifecycle import queries

    with pairio.config(database_path=str(memory.location)):
        return queries.entries()


def test_reduce_size_items_limit_keeps_those_used_last(tmp_path):
    memory = pairio.Memory(tmp_path / "s", verbose=0)
    f = memory.cache(_blob)
    for tag in (1, 2, 3):
        f(10, tag)
    f(10, 1)  # used last, though stored first
    memory.reduce_size(items_limit=2)
    assert [f.check_call_in_cache(10, tag) for tag in (1, 2, 3)] == [True, False, True]
    assert len(_entries(memory)) == 2
    memory.reduce_size(items_limit=0)
    assert _entries(memory) == [] and not f.check_call_in_cache(10, 1)
    with pytest.raises(pairio.PairioError, match="items_limit"):
        memory.reduce_size(items_limit=-1)


def test_reduce_size_age_limit_removes_those_not_used_since(tmp_path):
    import datetime

    from pairio.deferred import drain_all
    from pairio.kv import local_store

    memory = pairio.Memory(tmp_path / "s", verbose=0)
    f = memory.cache(_blob)
    f(10, 1), f(10, 2)
    with pairio.config(database_path=str(tmp_path / "s")) as cfg:
        drain_all()
        with local_store(cfg).transaction() as connection:  # both stored two hours ago, not used since
            connection.execute("UPDATE entries SET created = created - 7200, last_used = last_used - 7200")
    f(10, 1)  # used now: younger than the limit, though created before it
    memory.reduce_size(age_limit=datetime.timedelta(hours=1))
    assert f.check_call_in_cache(10, 1) and not f.check_call_in_cache(10, 2)
    memory.reduce_size(age_limit=3600)  # seconds, too
    assert f.check_call_in_cache(10, 1)


def test_reduce_size_bytes_limit_evicts_results_and_their_content(tmp_path):
    from pairio.content import content_store
    from pairio.lifecycle.eviction import total_size

    memory = pairio.Memory(tmp_path / "s", verbose=0)
    f = memory.cache(_blob)
    for tag in range(6):
        f(200_000, tag)  # 200 kB each, stored as objects
    found = _entries(memory)
    with pairio.config(database_path=str(tmp_path / "s")) as cfg:
        assert total_size(cfg) >= 1_200_000
        memory.reduce_size(bytes_limit="500kB")
        assert total_size(cfg) <= 500_000
        kept = {e.sha1 for e in _entries(memory)}
        store = content_store(cfg)
        assert 0 < len(kept) < 6
        assert [store.has(e.sha1) for e in found if e.sha1 not in kept] == [False] * (6 - len(kept))
    assert sum(f.check_call_in_cache(200_000, tag) for tag in range(6)) == len(kept)
    assert f(200_000, 0)[0] == 0  # an evicted call computes again


# --- the key across processes ------------------------------------------------------------------

_ESTIMATOR_HASHES = """
import json, sys
import numpy as np
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_union
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
import pairio
from pairio.memo.arguments import hash_value

words = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"}
estimators = {
    "scaler": StandardScaler(), "pca": PCA(n_components=3, random_state=0),
    "logreg": LogisticRegression(C=0.5, class_weight={0: 1, 1: 2}),
    "onehot": OneHotEncoder(categories=[["a", "b"]], handle_unknown="ignore"),
    "function": FunctionTransformer(np.log1p),
    "stop_words_set": TfidfVectorizer(stop_words=words),
    "vocabulary_frozenset": CountVectorizer(vocabulary=frozenset(words)),
    "column": ColumnTransformer([("s", StandardScaler(), [0, 1]), ("p", "passthrough", [2])]),
    "union": make_union(PCA(2), StandardScaler()),
    "pipeline": Pipeline([("s", StandardScaler()), ("v", CountVectorizer(stop_words=words))]),
}
out = {name: hash_value(clone(est)) for name, est in estimators.items()}
step = pairio.Memory(sys.argv[1], verbose=0).cache(__import__("sklearn.pipeline").pipeline._fit_transform_one)
X = np.arange(12.0).reshape(4, 3)
out["_fit_transform_one key"] = step.key(clone(estimators["stop_words_set"]), X, None, None)
print(json.dumps(out, sort_keys=True))
"""


def test_cloned_unfitted_estimators_hash_the_same_in_every_process(tmp_path):
    import json
    import os

    runs = []
    for seed in ("1", "2", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        runs.append(json.loads(subprocess.run([sys.executable, "-c", _ESTIMATOR_HASHES, str(tmp_path / "s")],
                                              env=env, capture_output=True, text=True, check=True).stdout))
    assert runs[0] == runs[1] == runs[2], [{k: r[k] for k in r if r[k] != runs[0][k]} for r in runs]
    assert len(set(runs[0].values())) == len(runs[0])


def test_a_set_inside_a_pickled_value_counts_by_its_items(tmp_path):
    from sklearn.feature_extraction.text import TfidfVectorizer

    from pairio.memo.arguments import hash_value

    words = ["alpha", "beta", "gamma", "delta"]
    assert hash_value(TfidfVectorizer(stop_words=set(words))) == hash_value(TfidfVectorizer(stop_words=set(words[::-1])))
    assert hash_value(TfidfVectorizer(stop_words=set(words))) != hash_value(TfidfVectorizer(stop_words=set(words[1:])))
    assert hash_value(TfidfVectorizer(stop_words=set(words))) != hash_value(TfidfVectorizer(stop_words=frozenset(words)))
    assert hash_value(TfidfVectorizer(stop_words=set(words))) != hash_value(TfidfVectorizer(stop_words=words))


_TRANSFORMER = '''
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


def shift(X, by):
    return X - by


class Centre(TransformerMixin, BaseEstimator):
    def __init__(self, log=None):
        self.log = log

    def fit(self, X, y=None):
        with open(self.log, "a") as f:
            f.write("fit\\n")
        self.mean_ = X.mean(axis=0)
        return self

    def transform(self, X):
        return shift(X, self.mean_)
'''

_FIT_WITH_MEMORY = """
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import pairio
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from usersteps import Centre
rng = np.random.default_rng(0)
X = rng.normal(size=(60, 3)); y = (X[:, 0] > 0).astype(int)
pipe = Pipeline([("c", Centre(sys.argv[2])), ("clf", LogisticRegression())], memory=pairio.Memory(sys.argv[3], verbose=0))
print(float(pipe.fit(X, y).steps[0][1].transform(X).sum()))
"""


def test_a_user_transformer_edited_between_processes_misses(tmp_path):
    code, log, store = tmp_path / "code", tmp_path / "fits.txt", tmp_path / "store"
    code.mkdir()

    def fit():
        subprocess.run([sys.executable, "-c", _FIT_WITH_MEMORY, str(code), str(log), str(store)], check=True)
        return _fits(log)

    (code / "usersteps.py").write_text(_TRANSFORMER)
    assert fit() == 1
    assert fit() == 1  # unchanged: a hit
    (code / "usersteps.py").write_text(_TRANSFORMER.replace("self.mean_ = X.mean(axis=0)",
                                                            "self.mean_ = np.median(X, axis=0)"))
    assert fit() == 2  # the class's own method edited
    assert fit() == 2
    (code / "usersteps.py").write_text(_TRANSFORMER.replace("self.mean_ = X.mean(axis=0)",
                                                            "self.mean_ = np.median(X, axis=0)")
                                       .replace("return X - by", "return (X - by) * 1.0"))
    assert fit() == 3  # a helper the class calls, edited


_SKLEARN_FIT = """
import sys
for extra in sys.argv[2:]:
    sys.path.insert(0, extra)
import numpy as np
import pairio
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
rng = np.random.default_rng(0)
X = rng.normal(size=(60, 4)); y = (X[:, 0] > 0).astype(int)
Pipeline([("p", PCA(2)), ("clf", LogisticRegression())], memory=pairio.Memory(sys.argv[1], verbose=0)).fit(X, y)
counts = [v for k, v in pairio.stats().items() if "_fit_transform_one" in k]
print(sum(c["hits"] for c in counts), sum(c["misses"] for c in counts))
"""


def test_the_scikit_learn_version_counts_in_the_key(tmp_path):
    import importlib.metadata

    real = importlib.metadata.version("scikit-learn")
    # Another installed scikit-learn, as importlib.metadata (what the key reads) sees it: a
    # distribution found first on sys.path, of the same name and another version.
    other = tmp_path / "other"
    info = other / "scikit_learn-0.0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: scikit-learn\nVersion: 0.0.1\n")
    (info / "top_level.txt").write_text("sklearn\n")
    check = "import sys; sys.path.insert(0, sys.argv[1]); import importlib.metadata as m; print(m.version('scikit-learn'))"
    assert subprocess.run([sys.executable, "-c", check, str(other)], capture_output=True, text=True,
                          check=True).stdout.strip() == "0.0.1" != real

    def fit(*extra):
        out = subprocess.run([sys.executable, "-c", _SKLEARN_FIT, str(tmp_path / "s"), *map(str, extra)],
                             capture_output=True, text=True, check=True).stdout
        return tuple(map(int, out.split()))

    assert fit() == (0, 1)
    assert fit() == (1, 0)
    assert fit(other) == (0, 1)  # another scikit-learn: PCA is fitted again
    assert fit(other) == (1, 0)
    assert fit() == (1, 0)


def test_a_memory_cached_function_on_a_dask_cluster_computes_each_key_once(tmp_path):
    distributed = pytest.importorskip("distributed")
    log = tmp_path / "calls.txt"
    f = pairio.Memory(tmp_path / "s", verbose=0).cache(_slow_double)
    xs = [1, 2, 3, 1, 2, 3, 1, 2, 3]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address="127.0.0.1:0") as cluster, distributed.Client(cluster) as client:
        assert len({w.pid for w in cluster.workers.values()} | {__import__("os").getpid()}) == 3
        # pure=False: dask must not merge the repeated calls itself; pairio is what makes them one.
        first = client.gather(client.map(f, xs, [str(log)] * len(xs), pure=False))
        workers = client.run(__import__("os").getpid)
        second = client.gather(client.map(f, xs, [str(log)] * len(xs), pure=False))
    assert len(set(workers.values())) == 2
    assert first == second == [2 * x for x in xs]
    assert sorted(log.read_text().split()) == ["1", "2", "3"]
