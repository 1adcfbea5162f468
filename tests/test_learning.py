"""Learning on the bundled MNIST subset: the settings README.md quotes reach 90% held-out accuracy."""
from streambp.evaluate import evaluate
from streambp.registry import open_source
from streambp.train import FitConfig, fit

# The README's settings: 784-128-10, plain SGD, lr 0.5, batch 32, 8 epochs (about 2 s of training here).
SETTINGS = dict(hidden=[128], lr=0.5, batch_size=32, epochs=8, seed=0)


def test_mnist_subset_reaches_90_percent_held_out(mnist_train, mnist_test, tmp_path):
    model = fit(FitConfig(data=str(mnist_train), out=str(tmp_path / "m.npz"), loggers=[], **SETTINGS))
    metrics = evaluate(model, open_source(mnist_test), "label")
    assert metrics["n_rows"] == 1000
    assert metrics["accuracy"] >= 0.90
    losses = [h["train_loss"] for h in model.training["history"]]
    assert losses[-1] < losses[0] / 3
