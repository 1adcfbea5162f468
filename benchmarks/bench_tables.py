"""Raw tables with no flags: `streambp fit TRAIN --label L` against two scikit-learn pipelines.

Each table is a real one that a package ships, exported raw (as pandas reads it: unscaled numbers, strings,
nulls) to Parquet and split 75/25, stratified, with a fixed seed. For each:
- streambp: `streambp fit train.parquet --label L --out m.npz`, then `streambp evaluate m.npz test.parquet`,
  each a process of its own; wall time of both together, peak RSS the larger of the two.
- scikit-learn, each in a process of its own that reads the same Parquet files with pandas:
  ColumnTransformer(numeric: SimpleImputer(mean, add_indicator=True) + StandardScaler; categorical:
  SimpleImputer(constant) + OneHotEncoder(handle_unknown="ignore")), then LogisticRegression(max_iter=2000)
  or MLPClassifier(max_iter=500, random_state=0) (defaults otherwise).
- majority: the test accuracy of always predicting the training set's most frequent class.

    python benchmarks/bench_tables.py [--tables wine,penguins] [--json benchmarks/results/tables.json]

Needs the `bench` extra (scikit-learn, pandas, palmerpenguins, plotnine, statsmodels).
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "..", "examples")


def plotnine_csv(name):
    """A table shipped inside the plotnine wheel, read without importing plotnine."""
    import pandas as pd

    base = importlib.util.find_spec("plotnine").submodule_search_locations[0]
    return pd.read_csv(os.path.join(base, "data", f"{name}.csv"))


def sklearn_table(loader):
    def load():
        import sklearn.datasets as d

        frame = getattr(d, loader)(as_frame=True).frame
        return frame
    return load


def penguins():
    import palmerpenguins

    return palmerpenguins.load_penguins()


def anes96():
    from statsmodels.datasets import anes96 as a

    return a.load_pandas().data


# name -> (loader of a DataFrame, label column); mnist is bundled already split.
TABLES = {
    "mnist": (None, "label"),
    "wine": (sklearn_table("load_wine"), "target"),
    "breast_cancer": (sklearn_table("load_breast_cancer"), "target"),
    "digits": (sklearn_table("load_digits"), "target"),
    "iris": (sklearn_table("load_iris"), "target"),
    "penguins": (penguins, "species"),
    "diamonds": (lambda: plotnine_csv("diamonds"), "cut"),
    "mpg": (lambda: plotnine_csv("mpg"), "class"),
    "anes96": (anes96, "vote"),
}


def split(name, directory):
    """(train path, test path) of the table, written raw to Parquet."""
    if name == "mnist":
        return os.path.join(EXAMPLES, "mnist_train.parquet"), os.path.join(EXAMPLES, "mnist_test.parquet")
    from sklearn.model_selection import train_test_split

    loader, label = TABLES[name]
    frame = loader()
    train, test = train_test_split(frame, test_size=0.25, random_state=0, stratify=frame[label])
    paths = os.path.join(directory, f"{name}-train.parquet"), os.path.join(directory, f"{name}-test.parquet")
    train.to_parquet(paths[0], index=False)
    test.to_parquet(paths[1], index=False)
    return paths


def peak_rss_cmd(cmd):
    """cmd under a `python -c` that reports the child's peak RSS (ru_maxrss of RUSAGE_CHILDREN) on stderr."""
    return [sys.executable, "-c", "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
            "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
            "sys.exit(r.returncode)", *cmd]


def run(cmd):
    """(seconds, peak RSS in MiB, stdout) of a command run to completion; raises on a non-zero exit."""
    t = time.perf_counter()
    p = subprocess.run(peak_rss_cmd(cmd), capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    rss = int(next(line for line in p.stderr.splitlines() if line.startswith("PEAK_RSS_KB")).split()[1]) / 1024
    return seconds, rss, p.stdout


def streambp_result(train, test, label, directory, fit_args=()):
    exe = os.path.join(os.path.dirname(sys.executable), "streambp")
    model = os.path.join(directory, "m.npz")
    t1, r1, _ = run([exe, "fit", train, "--label", label, "--out", model, *fit_args])
    t2, r2, out = run([exe, "evaluate", model, test, "--label", label, "--json"])
    return {"accuracy": json.loads(out)["accuracy"], "seconds": t1 + t2, "rss_mib": max(r1, r2)}


def sklearn_result(train, test, label, which):
    t, rss, out = run([sys.executable, __file__, "--sklearn", which, train, test, label])
    return {"accuracy": json.loads(out)["accuracy"], "seconds": t, "rss_mib": rss}


def sklearn_main(which, train, test, label):
    """One scikit-learn pipeline: fit on train, print the test accuracy as JSON."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    a, b = pd.read_parquet(train), pd.read_parquet(test)
    X, y, Xt, yt = a.drop(columns=[label]), a[label], b.drop(columns=[label]), b[label]
    numeric = [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c]) and not pd.api.types.is_bool_dtype(X[c])]
    categorical = [c for c in X.columns if c not in numeric]
    X[categorical] = X[categorical].astype(object)
    Xt[categorical] = Xt[categorical].astype(object)
    prep = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="mean", add_indicator=True), StandardScaler()), numeric),
        ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="missing"),
                              OneHotEncoder(handle_unknown="ignore")), categorical)])
    clf = LogisticRegression(max_iter=2000) if which == "logistic" else MLPClassifier(max_iter=500, random_state=0)
    model = make_pipeline(prep, clf).fit(X, y)
    print(json.dumps({"accuracy": float((model.predict(Xt) == yt).mean())}))


def majority(train, test, label):
    import pyarrow.parquet as pq

    y = pq.read_table(train, columns=[label]).column(0).to_pandas()
    yt = pq.read_table(test, columns=[label]).column(0).to_pandas()
    return float((yt == y.mode()[0]).mean()), len(y), pq.read_schema(train).names


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tables", default=",".join(TABLES))
    p.add_argument("--json")
    p.add_argument("--fit-args", default="", help="more `streambp fit` flags, e.g. '--lr-schedule cosine' (to "
                   "compare defaults)")
    p.add_argument("--sklearn", nargs=4, metavar=("WHICH", "TRAIN", "TEST", "LABEL"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.sklearn:
        return sklearn_main(*args.sklearn)
    rows = []
    header = (f"{'table':<14}{'rows':>7}{'cols':>5}{'major':>7}{'streambp':>9}{'s':>6}{'MiB':>5}"
              f"{'logreg':>8}{'s':>6}{'mlp':>7}{'s':>6}{'MiB':>5}{'gap':>7}")
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.tables.split(","):
            train, test = split(name, tmp)
            label = TABLES[name][1]
            base, n, columns = majority(train, test, label)
            s = streambp_result(train, test, label, tmp, args.fit_args.split())
            lr = sklearn_result(train, test, label, "logistic")
            mlp = sklearn_result(train, test, label, "mlp")
            best = max(lr, mlp, key=lambda r: r["accuracy"])
            row = {"table": name, "train_rows": n, "columns": len(columns) - 1, "majority": base, "streambp": s,
                   "logistic": lr, "mlp": mlp, "gap_points": 100 * (s["accuracy"] - best["accuracy"])}
            rows.append(row)
            print(f"{name:<14}{n:>7}{len(columns) - 1:>5}{base:>7.3f}{s['accuracy']:>9.3f}{s['seconds']:>6.1f}"
                  f"{s['rss_mib']:>5.0f}{lr['accuracy']:>8.3f}{lr['seconds']:>6.1f}{mlp['accuracy']:>7.3f}"
                  f"{mlp['seconds']:>6.1f}{best['rss_mib']:>5.0f}{row['gap_points']:>+7.1f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
