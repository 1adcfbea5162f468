"""Plain NumPy reference for the streambp network, in float64, and small shared test helpers.

Math (minibatch form): z^l = a^{l-1} W^l^T + b^l; a^l = sigmoid(z^l) in hidden layers, a^L = softmax(z^L);
C = sum_i w_i * -ln a^L[i, y_i]; delta^L = (a^L - onehot(y)) * w;
delta^l = (delta^{l+1} W^{l+1}) a^l (1 - a^l); dW^l = delta^l^T a^{l-1}; db^l = column sums of delta^l.
Categorical inputs idx[B, C] (slots in [0, V)) with a table E[V, O_1] add bag(idx) E to z^1, where
bag(idx)[B, V] = sum over c of onehot(idx[:, c]) (the materialised one-hot columns); dE = bag(idx)^T delta^1.
"""
import numpy as np

from streambp.model import Model


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def softmax(z):
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def crossentropy(z, y):
    """Per-row -ln softmax(z)[i, y_i], from the log-sum-exp."""
    z = np.asarray(z, dtype=np.float64)
    m = z.max(axis=1)
    lse = m + np.log(np.exp(z - m[:, None]).sum(axis=1))
    return lse - z[np.arange(len(y)), y]


def onehot(y, k):
    return np.eye(k)[y]


def as64(layers):
    return [(np.asarray(W, np.float64), np.asarray(b, np.float64)) for W, b in layers]


def bag(idx, V):
    """[B, V]: how often each slot occurs in each row of idx[B, C], the sum of its one-hot columns."""
    idx = np.asarray(idx)
    return np.eye(V)[idx.reshape(-1)].reshape(*idx.shape, V).sum(axis=1)


def table_input(layers, X, table, idx):
    """(table [V, O_1] in float64, bag(idx) [B, V]); no table: an empty one and no columns."""
    O1 = layers[0][0].shape[0]
    table = np.zeros((0, O1)) if table is None else np.asarray(table, np.float64)
    idx = np.zeros((len(X), 0), np.int64) if idx is None else idx
    return table, bag(idx, table.shape[0])


def forward(layers, X, table=None, idx=None):
    """[a^0 = X, a^1, .., a^{L-1}, z^L]: the inputs, every hidden activation and the logits."""
    table, counts = table_input(layers, X, table, idx)
    acts = [np.asarray(X, dtype=np.float64)]
    for l, (W, b) in enumerate(as64(layers)):
        z = acts[-1] @ W.T + b + (counts @ table if l == 0 else 0)
        acts.append(sigmoid(z) if l < len(layers) - 1 else z)
    return acts


def loss(layers, X, y, w, table=None, idx=None):
    """(C, per-row losses, probabilities a^L)."""
    z = forward(layers, X, table, idx)[-1]
    losses = crossentropy(z, y)
    return float(np.dot(w, losses)), losses, softmax(z)


def backward(layers, X, y, w, table=None, idx=None):
    """(C, [(dW^l, db^l) for every layer], dE [V, O_1]) by backpropagation."""
    layers = as64(layers)
    acts = forward(layers, X, table, idx)
    probs = softmax(acts[-1])
    c = float(np.dot(w, crossentropy(acts[-1], y)))
    delta = (probs - onehot(y, probs.shape[1])) * np.asarray(w, np.float64)[:, None]
    grads = []
    for l in range(len(layers) - 1, -1, -1):
        grads.append((delta.T @ acts[l], delta.sum(axis=0)))
        if l > 0:
            delta = (delta @ layers[l][0]) * acts[l] * (1 - acts[l])
    _, counts = table_input(layers, X, table, idx)
    return c, grads[::-1], counts.T @ delta


def unflatten(theta, sizes):
    """[(W [O, I], b [O])] views of a flat buffer: every layer's W (row-major) then b, first layer first."""
    out, p = [], 0
    for I, O in zip(sizes[:-1], sizes[1:]):
        out.append((theta[p:p + O * I].reshape(O, I), theta[p + O * I:p + O * I + O]))
        p += O * I + O
    return out


def random_model(sizes, dtype, seed=0):
    """Model.initialise weights plus random (nonzero) biases, so every parameter matters."""
    model = Model.initialise(sizes, list(range(sizes[-1])), [f"x{i}" for i in range(sizes[0])], seed=seed,
                             dtype=dtype)
    rng = np.random.default_rng(seed + 1)
    for _, b in model.layers:
        b[...] = rng.normal(0, 0.5, size=b.shape)
    return model


def random_batch(sizes, rows, dtype, seed=0):
    """(X [rows, D] C-contiguous of dtype, y int32 [rows]) with every class present when rows >= K."""
    rng = np.random.default_rng(seed + 2)
    X = np.ascontiguousarray(rng.normal(size=(rows, sizes[0])), dtype=dtype)
    y = (np.arange(rows) % sizes[-1]).astype(np.int32)
    rng.shuffle(y)
    return X, y


def flatten(layers):
    """The flat buffer for [(W, b)]: the inverse of unflatten."""
    return np.concatenate([np.concatenate([np.ravel(W), b]) for W, b in layers])
