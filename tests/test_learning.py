"""Learning on the bundled data with no settings: what README.md's first commands promise."""
import pyarrow.csv as pcsv

from streambp.evaluate import evaluate
from streambp.registry import open_source
from streambp.train import FitConfig, fit



def test_mnist_subset_reaches_90_percent_held_out_with_the_defaults(mnist_train, mnist_test, tmp_path):
    model = fit(FitConfig(data=str(mnist_train), out=str(tmp_path / "m.npz"), loggers=[]))
    metrics = evaluate(model, open_source(mnist_test), "label")
    assert metrics["n_rows"] == 1000
    assert metrics["accuracy"] >= 0.90
    losses = [h["train_loss"] for h in model.training["history"]]
    assert losses[-1] < losses[0] / 3


def test_the_raw_penguins_table_beats_the_majority_class_by_far_with_the_defaults(tmp_path):
    """The quick start's raw table (strings, nulls, unscaled numbers), no flag but --label."""
    from conftest import EXAMPLES

    model = fit(FitConfig(data=str(EXAMPLES / "penguins_train.csv"), label="species", out=None, loggers=[]))
    test = open_source(EXAMPLES / "penguins_test.csv")
    metrics = evaluate(model, test, "species")
    majority = max(pcsv.read_csv(EXAMPLES / "penguins_test.csv")["species"].value_counts().field("counts")
                   .to_pylist()) / metrics["n_rows"]
    assert metrics["n_rows"] == 86 and majority < 0.45
    assert metrics["accuracy"] >= 0.95  # scikit-learn's imputer + scaler + one-hot + logistic regression: 0.988
