#!/usr/bin/env python
"""In-memory training throughput: streambp's Stepper vs PyTorch (CPU), NumPy and scikit-learn, side by side.

Every implementation trains the same network (sigmoid hidden layers, softmax output, mean cross-entropy,
plain SGD, float32) on the same random in-memory data set, cycling through it minibatch by minibatch.
Per (network, batch size) point each implementation is warmed up (JIT compile, first steps) and
calibrated to a step count that takes about --seconds; then --repeats timed runs follow, the
implementations interleaved and their order rotated each repeat so that machine noise hits them alike.

Reported per point: examples/s (median, min, max over the repeats), the ratios of the medians
streambp/PyTorch, streambp/NumPy and streambp/sklearn, and the achieved GFLOP/s counting only the
network's needed matrix-product FLOPs, against the float32 GEMM rate of this machine measured in the same
run with the same thread count (a large np.dot; scipy's BLAS, which Numba's np.dot calls, and torch.mm in
the PyTorch process are measured too).

Needed FLOPs of one training step on B rows, for layers l = 1..L with I_l inputs and O_l outputs
(a multiply-add counts as 2 FLOPs):
    forward   z^l = a^{l-1} W^l^T           2 B I_l O_l   for every layer
    backward  dW^l = delta^l^T a^{l-1}       2 B I_l O_l   for every layer
              delta^{l-1} = delta^l W^l      2 B I_l O_l   for l = 2..L only (no gradient w.r.t. the input)
    total = 2 B (3 sum_l I_l O_l - I_1 O_1)
The O(B * units + parameters) element-wise work (bias, sigmoid, softmax, cross-entropy, bias gradients,
SGD update) is left out: at ~10 operations per unit and row plus 2 per parameter it would add 3.4-4.5%
for net C, under 2% for A, B and D (at B=32, where the SGD update weighs most) and under 0.5% at B=512.

Processes: PyTorch and scikit-learn each run in a worker process of their own (this script with
--worker NAME), started with the environment the user started the benchmark with: a copy of os.environ
taken at the top of this script, before `import streambp` sets OMP_WAIT_POLICY=PASSIVE (unless the user
set it) and chooses Numba's OpenMP threading layer. In one process PyTorch's libgomp would read that
passive policy and lose 2.5-5x (measured at B=32: A 97.6k ex/s alone vs 39.4k beside streambp, C 198k
vs 40k). A worker imports only its own library, generates the same data from the same seed with
make_data (a CRC of the arrays confirms it) and answers JSON-line commands over a pipe (setup, run
steps, parameters, GEMM), so the implementations stay interleaved. streambp and NumPy run in the main
process; NumPy's OpenBLAS uses pthreads, not OpenMP, so the wait policy does not touch it.
--omp-wait-policy sets OMP_WAIT_POLICY for every process, as if it were set in the environment.
OPENBLAS_* variables are left as the environment has them.

scikit-learn: MLPClassifier(activation='logistic', solver='sgd', momentum=0, alpha=0,
learning_rate='constant', batch_size=B, shuffle=False) fed one minibatch per partial_fit call (with
classes=); it keeps float32 data in float32 and initialises the weights its own way (the check below gives
it streambp's). It is slow, so its calibrated step count is small (a timed run still lasts --seconds).

Noise control (the machine may be shared): each timed run is preceded by a --cooldown sleep, because
OpenBLAS's workers spin ~0.1 s after a call (numpy and scipy, which Numba's np.dot calls, each load
their own OpenBLAS; PyTorch's OpenMP threads spin too), so one implementation's spinning threads would
otherwise steal a core from the next. The CPU time other processes use during the timed runs is measured
(/proc/stat minus the CPU time of this process and its workers); a point above --quiet-threshold is
measured again (--retries) after waiting (--wait) for a quiet machine, and is marked * in the table if it
stays disturbed. Before the timings, a check runs 8 SGD steps of every selected implementation from the
same weights and compares losses and parameters with streambp's.

Usage:
    python benchmarks/bench_kernels.py                     # nets A,B,C at B=32,128,512 and D at B=512
    python benchmarks/bench_kernels.py --quick             # a smoke test (~30 s)
    python benchmarks/bench_kernels.py --nets A,C --batches 32,128 --threads 1 --json out.json
"""
import argparse
import datetime
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import time
import traceback
import zlib

# The environment the user started us with, copied before anything imports streambp (which adds
# OMP_WAIT_POLICY=PASSIVE): the PyTorch and scikit-learn workers run with it (see worker_env).
USER_ENV = dict(os.environ)
STREAMBP_IMPORTED_BEFORE = "streambp" in sys.modules

NETS = {
    "A": [784, 128, 10],
    "B": [784, 512, 256, 10],
    "C": [54, 64, 64, 7],
    "D": [1024, 2048, 2048, 10],
}
DEFAULT_BATCHES = {"A": [32, 128, 512], "B": [32, 128, 512], "C": [32, 128, 512], "D": [512]}
IMPLS = ["streambp", "pytorch", "numpy", "sklearn"]
WORKER_IMPLS = ("pytorch", "sklearn")  # each runs in a process of its own with the user's environment


def train_flops(sizes, batch):
    """Needed FLOPs of one training step (see the module docstring): 2 B (3 sum I O - I_1 O_1)."""
    io = [sizes[l] * sizes[l + 1] for l in range(len(sizes) - 1)]
    return 2 * batch * (3 * sum(io) - io[0])


# ---------------------------------------------------------------------------------------------------------
# Implementations. Each has run(n): n training steps on consecutive minibatches, returning the last loss,
# and theta(): the parameters in streambp's flat layout (W_l [O, I] row-major then b_l, layer by layer).


class StreambpImpl:
    name = "streambp"

    def __init__(self, sizes, data, batch, lr, theta=None):
        import numpy as np
        from streambp.default_plugins.optimizers import SGD
        from streambp.model import Model
        from streambp.step import Stepper

        self.model = Model.initialise(sizes, classes=list(range(sizes[-1])),
                                      features=[f"f{j}" for j in range(sizes[0])], seed=0)
        if theta is not None:
            self.model.theta[:] = theta
        self.stepper = Stepper(self.model, SGD(self.model.theta), batch)
        self.X, self.y = data["X"], data["y"]
        assert self.X.flags.c_contiguous and self.X.dtype == np.float32 and self.y.dtype == np.int32
        self.B, self.N, self.lr, self.i = batch, self.X.shape[0], lr, 0

    def run(self, n):
        X, y, B, N, lr, step = self.X, self.y, self.B, self.N, self.lr, self.stepper.step
        i, loss = self.i, None
        for _ in range(n):
            loss = step(X[i:i + B], None, y[i:i + B], lr)[0]
            i += B
            if i + B > N:
                i = 0
        self.i = i
        return float(loss)

    def theta(self):
        return self.model.theta.copy()


class TorchImpl:
    name = "pytorch"

    def __init__(self, sizes, data, batch, lr, theta=None):
        import torch
        from torch import nn

        torch.manual_seed(0)
        layers = []
        for l in range(len(sizes) - 1):
            lin = nn.Linear(sizes[l], sizes[l + 1])
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)
            layers.append(lin)
            if l < len(sizes) - 2:
                layers.append(nn.Sigmoid())
        self.net = nn.Sequential(*layers)
        self.linears = [m for m in self.net if isinstance(m, nn.Linear)]
        if theta is not None:  # streambp's flat layout: W_l [O, I] row-major then b_l, layer by layer
            p = 0
            with torch.no_grad():
                for lin in self.linears:
                    O, I = lin.weight.shape
                    lin.weight.copy_(torch.from_numpy(theta[p:p + O * I].reshape(O, I)))
                    lin.bias.copy_(torch.from_numpy(theta[p + O * I:p + O * I + O]))
                    p += O * I + O
        self.opt = torch.optim.SGD(self.net.parameters(), lr=lr)
        self.X = torch.from_numpy(data["X"])  # shares memory with the NumPy array
        self.y = torch.from_numpy(data["y64"])  # F.cross_entropy wants int64 class indices
        self.B, self.N, self.i = batch, data["X"].shape[0], 0

    def run(self, n):
        import torch.nn.functional as F

        X, y, B, N, net, opt = self.X, self.y, self.B, self.N, self.net, self.opt
        i, loss = self.i, None
        for _ in range(n):
            loss = F.cross_entropy(net(X[i:i + B]), y[i:i + B])
            opt.zero_grad()
            loss.backward()
            opt.step()
            i += B
            if i + B > N:
                i = 0
        self.i = i
        return float(loss.detach())

    def theta(self):
        import numpy as np

        return np.concatenate([t for lin in self.linears
                               for t in (lin.weight.detach().numpy().ravel(), lin.bias.detach().numpy())])


class NumpyImpl:
    """The same math in plain NumPy on preallocated buffers with in-place operations (no allocation
    per step beyond NumPy's own small temporaries). Parameters live in one flat buffer like streambp's."""

    name = "numpy"

    def __init__(self, sizes, data, batch, lr, theta=None):
        import numpy as np

        f32 = np.float32
        L = len(sizes) - 1
        P = sum(sizes[l + 1] * (sizes[l] + 1) for l in range(L))
        self.theta_buf = np.zeros(P, dtype=f32)
        self.dtheta = np.zeros(P, dtype=f32)
        self.W, self.b, self.dW, self.db = [], [], [], []
        p = 0
        for l in range(L):
            I, O = sizes[l], sizes[l + 1]
            self.W.append(self.theta_buf[p:p + O * I].reshape(O, I))
            self.b.append(self.theta_buf[p + O * I:p + O * I + O])
            self.dW.append(self.dtheta[p:p + O * I].reshape(O, I))
            self.db.append(self.dtheta[p + O * I:p + O * I + O])
            p += O * I + O
        if theta is not None:
            self.theta_buf[:] = theta
        else:  # Glorot uniform, zero biases
            rng = np.random.default_rng(0)
            for W in self.W:
                r = np.sqrt(6.0 / (W.shape[0] + W.shape[1]))
                W[...] = rng.uniform(-r, r, size=W.shape)
        self.acts = [np.empty((batch, sizes[l + 1]), dtype=f32) for l in range(L)]
        self.deltas = [np.empty((batch, sizes[l + 1]), dtype=f32) for l in range(L - 1)] + [self.acts[-1]]
        self.tmp = [np.empty((batch, sizes[l + 1]), dtype=f32) for l in range(L - 1)]
        self.rowbuf = np.empty((batch, 1), dtype=f32)
        self.X, self.Y = data["X"], data["onehot"]  # one-hot targets [N, K] float32, precomputed once
        self.B, self.N, self.L, self.lr, self.i = batch, self.X.shape[0], L, f32(lr), 0
        self.inv_b = f32(1.0 / batch)

    def step(self, Xb, Yb):
        import numpy as np

        L, W, b, acts = self.L, self.W, self.b, self.acts
        a = Xb
        for l in range(L):  # z = a W^T + b; hidden a = sigmoid(z) = 1 / (1 + exp(-z))
            z = acts[l]
            np.dot(a, W[l].T, out=z)
            z += b[l]
            if l < L - 1:
                np.negative(z, out=z)
                np.exp(z, out=z)
                z += 1
                np.reciprocal(z, out=z)
            a = z
        z, r = acts[-1], self.rowbuf  # softmax and mean cross-entropy, via the stable log-sum-exp
        np.max(z, axis=1, keepdims=True, out=r)
        z -= r
        zy = np.vdot(z, Yb)  # sum over rows of the (shifted) logit of the true class
        np.exp(z, out=z)
        np.sum(z, axis=1, keepdims=True, out=r)
        z /= r
        np.log(r, out=r)
        loss = (r.sum() - zy) * self.inv_b
        z -= Yb  # delta^L = (a^L - y) / B, in place over a^L
        z *= self.inv_b
        for l in range(L - 1, -1, -1):
            d = self.deltas[l]
            a_prev = acts[l - 1] if l > 0 else Xb
            np.dot(d.T, a_prev, out=self.dW[l])  # dW = delta^T a_prev
            np.sum(d, axis=0, out=self.db[l])  # db = column sums of delta
            if l > 0:  # delta^{l-1} = (delta^l W^l) * a (1 - a)
                dp, t = self.deltas[l - 1], self.tmp[l - 1]
                np.dot(d, W[l], out=dp)
                np.subtract(1, a_prev, out=t)
                t *= a_prev
                dp *= t
        self.dtheta *= self.lr  # SGD: theta <- theta - lr dtheta
        self.theta_buf -= self.dtheta
        return loss

    def run(self, n):
        X, Y, B, N, step = self.X, self.Y, self.B, self.N, self.step
        i, loss = self.i, None
        for _ in range(n):
            loss = step(X[i:i + B], Y[i:i + B])
            i += B
            if i + B > N:
                i = 0
        self.i = i
        return float(loss)

    def theta(self):
        return self.theta_buf.copy()


class SklearnImpl:
    """scikit-learn's MLPClassifier with plain SGD, one partial_fit call per minibatch."""

    name = "sklearn"

    def __init__(self, sizes, data, batch, lr, theta=None):
        import numpy as np
        from sklearn.neural_network import MLPClassifier

        self.clf = MLPClassifier(hidden_layer_sizes=tuple(sizes[1:-1]), activation="logistic", solver="sgd",
                                 learning_rate_init=lr, momentum=0.0, nesterovs_momentum=False, alpha=0.0,
                                 batch_size=batch, learning_rate="constant", shuffle=False, random_state=0)
        self.classes = np.arange(sizes[-1])
        self.X, self.y = data["X"], data["y"]
        self.B, self.N, self.i = batch, self.X.shape[0], 0
        if theta is not None:
            # The first partial_fit call creates the weights (its own Glorot init) and takes a step; then
            # they are overwritten in place (the optimizer updates these very arrays) and the data restarts.
            self.run(1)
            self.i, p = 0, 0
            for W, b in zip(self.clf.coefs_, self.clf.intercepts_):  # W is [I, O]: X @ W
                I, O = W.shape
                W[...] = theta[p:p + O * I].reshape(O, I).T
                b[...] = theta[p + O * I:p + O * I + O]
                p += O * I + O

    def run(self, n):
        X, y, B, N, fit, classes = self.X, self.y, self.B, self.N, self.clf.partial_fit, self.classes
        i = self.i
        for _ in range(n):
            fit(X[i:i + B], y[i:i + B], classes=classes)
            i += B
            if i + B > N:
                i = 0
        self.i = i
        return float(self.clf.loss_)

    def theta(self):
        import numpy as np

        return np.concatenate([t for W, b in zip(self.clf.coefs_, self.clf.intercepts_)
                               for t in (W.T.ravel(), b)]).astype(np.float32)


IMPL_CLASSES = {"streambp": StreambpImpl, "pytorch": TorchImpl, "numpy": NumpyImpl, "sklearn": SklearnImpl}


# ---------------------------------------------------------------------------------------------------------
# Worker processes: PyTorch and scikit-learn each run in their own, with the user's environment.


def worker_env(omp_wait_policy=None):
    """The environment for the workers: the user's, as copied at the top of this script. If a caller had
    imported streambp before this module, an OMP_WAIT_POLICY missing from the environment the process
    was started with (/proc/self/environ) is streambp's and is dropped. --omp-wait-policy applies too."""
    env = dict(USER_ENV)
    if STREAMBP_IMPORTED_BEFORE and "OMP_WAIT_POLICY" in env:
        try:
            with open("/proc/self/environ", "rb") as f:
                started_with = {v.split(b"=", 1)[0] for v in f.read().split(b"\0") if v}
            if b"OMP_WAIT_POLICY" not in started_with:
                del env["OMP_WAIT_POLICY"]
        except OSError:
            pass  # cannot tell: keep it
    if omp_wait_policy:
        env["OMP_WAIT_POLICY"] = omp_wait_policy
    return env


class Worker:
    """Main-process handle of a worker process: `python bench_kernels.py --worker NAME` speaking JSON
    lines over its stdin/stdout (its stderr is ours). call(cmd, **args) returns the reply dict."""

    def __init__(self, name, threads, env):
        self.name = name
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", name], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.pid = self.proc.pid
        self.info = self.call("init", threads=threads)

    def call(self, cmd, **args):
        self.proc.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} worker exited (status {self.proc.wait()}) during {cmd!r}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"the {self.name} worker failed during {cmd!r}:\n{reply['error']}")
        return reply

    def close(self):
        """Stop the worker (once); return its final report (peak RSS), None if it had already gone."""
        if not self.proc.stdin.closed:
            try:
                self.final = self.call("close")
            except (RuntimeError, OSError):
                self.final = None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.final


class WorkerImpl:
    """An implementation living in a worker process, with the interface of the in-process ones. The worker
    builds the data itself with make_data from the same seed; the CRCs must match."""

    def __init__(self, worker, sizes, data, batch, lr, theta=None):
        self.name, self.worker = worker.name, worker
        reply = worker.call("setup", sizes=sizes, rows=data["X"].shape[0], seed=data["seed"], batch=batch,
                            lr=lr, theta=None if theta is None else theta.tolist())
        if reply["digest"] != data_digest(data):
            raise RuntimeError(f"the {self.name} worker generated different data")

    def run(self, n):
        return self.worker.call("run", steps=n)["loss"]

    def theta(self):
        import numpy as np

        return np.asarray(self.worker.call("theta")["theta"], dtype=np.float32)


def new_impl(name, sizes, data, batch, lr, workers, theta=None):
    """The implementation `name`, in its worker if it has one, else in this process."""
    if name in workers:
        return WorkerImpl(workers[name], sizes, data, batch, lr, theta)
    return IMPL_CLASSES[name](sizes, data, batch, lr, theta)


def worker_main(name):
    """The worker side: import only this implementation's library and answer commands until stdin closes."""
    import numpy as np
    from threadpoolctl import threadpool_info, threadpool_limits

    proto, sys.stdout = sys.stdout, sys.stderr  # stray prints must not corrupt the protocol
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the main process, which closes our stdin
    np.seterr(over="ignore")
    state = {"data_key": None, "data": None, "impl": None, "limits": None}

    def init(threads):
        if name == "pytorch":
            import torch

            torch.set_num_threads(threads)
            versions = {"torch": torch.__version__}
            lib_threads = {"torch_threads": torch.get_num_threads()}
        else:
            import sklearn
            import sklearn.neural_network  # loads scipy and its BLAS, to limit them below

            state["limits"] = threadpool_limits(limits=threads)  # every BLAS and OpenMP runtime loaded
            versions = {"sklearn": sklearn.__version__}
            lib_threads = {}
        return {"pid": os.getpid(), "versions": {"numpy": np.__version__, **versions},
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                "openmp_runtimes": loaded_openmp_runtimes(),
                **lib_threads, "threadpoolctl": [{k: p.get(k) for k in ("user_api", "internal_api", "prefix",
                                                                         "version", "num_threads")}
                                                  for p in threadpool_info()]}

    def setup(sizes, rows, seed, batch, lr, theta):
        state["impl"] = None  # free the previous model (and data, if it changes) before building the next
        key = (tuple(sizes), rows, seed)
        if state["data_key"] != key:
            state["data"] = None
            state["data"], state["data_key"] = make_data(sizes, rows, seed), key
        theta = None if theta is None else np.asarray(theta, dtype=np.float32)
        state["impl"] = IMPL_CLASSES[name](sizes, state["data"], batch, lr, theta)
        return {"digest": data_digest(state["data"])}

    commands = {
        "init": init,
        "setup": setup,
        "run": lambda steps: {"loss": state["impl"].run(steps)},
        "theta": lambda: {"theta": state["impl"].theta().tolist()},
        "gemm": lambda n, repeats, cooldown: {"rates": gemm_rates(n, repeats, cooldown, libs=("torch",))},
        "close": lambda: {"peak_rss_mib": peak_rss_mib()},
    }
    while True:
        line = sys.stdin.readline()
        if not line:
            break
        req = json.loads(line)
        cmd = req.pop("cmd")
        try:
            reply = commands[cmd](**req)
        except Exception:  # reported to the main process, which raises it
            reply = {"error": traceback.format_exc()}
        proto.write(json.dumps(reply) + "\n")
        proto.flush()
        if cmd == "close":
            break


# ---------------------------------------------------------------------------------------------------------
# Machine state helpers.


class CpuMeter:
    """CPU time that other processes used while we measured: /proc/stat minus our own CPU time, which is
    this process's rusage plus the CPU time of the worker processes `pids` (/proc/PID/stat).

    other() is the busy CPU time of the whole machine minus ours, as a fraction of (wall time x online
    CPUs); steal() is the hypervisor's steal time likewise. None off Linux.
    """

    def __init__(self, pids=()):
        self.hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.ncpu = os.cpu_count() or 1
        self.pids = list(pids)

    def _stat(self):
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = (v + [0] * 8)[:8]
        return (user + nice + system + irq + softirq) / self.hz, steal / self.hz

    def _pid_cpu(self, pid):
        """User + system seconds of process `pid` (0 if unreadable)."""
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # after "pid (comm)": state is field 3
        except (OSError, IndexError):
            return 0.0
        return (int(fields[11]) + int(fields[12])) / self.hz  # fields 14 and 15: utime, stime

    def snapshot(self):
        ru = resource.getrusage(resource.RUSAGE_SELF)
        own = ru.ru_utime + ru.ru_stime + sum(self._pid_cpu(p) for p in self.pids)
        return time.perf_counter(), self._stat(), own

    def delta(self, s0, s1):
        """(wall seconds, our CPU seconds, other processes' CPU seconds, steal seconds)."""
        wall, own = s1[0] - s0[0], s1[2] - s0[2]
        if s0[1] is None or s1[1] is None:
            return wall, own, None, None
        busy, steal = s1[1][0] - s0[1][0], s1[1][1] - s0[1][1]
        return wall, own, max(0.0, busy - own), steal


def wait_quiet(meter, threshold, timeout):
    """Sleep until other processes use under `threshold` of the machine for two 0.5 s samples in a row
    (or `timeout` seconds pass); return (seconds waited, last sampled fraction)."""
    t0, calm, frac = time.perf_counter(), 0, None
    while time.perf_counter() - t0 < timeout:
        s0 = meter.snapshot()
        time.sleep(0.5)
        wall, _own, other, _steal = meter.delta(s0, meter.snapshot())
        if other is None:
            return 0.0, None
        frac = other / (wall * meter.ncpu)
        calm = calm + 1 if frac < threshold else 0
        if calm >= 2:
            break
    return time.perf_counter() - t0, frac


def disturbance(point):
    """Worst fraction of the machine that other processes used during the point's timed runs."""
    v = [im["cpu_other_fraction"] for im in point["impls"].values() if im["cpu_other_fraction"] is not None]
    return max(v) if v else 0.0


def loaded_openmp_runtimes():
    """Paths of OpenMP runtimes mapped into this process (Linux; empty elsewhere)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "/" in line}
    except OSError:
        return []
    return sorted(p for p in paths if any(k in os.path.basename(p) for k in ("libgomp", "libiomp", "libomp")))


def peak_rss_mib():
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux (bytes on macOS)
    return kib / (1024.0 * 1024.0) if sys.platform == "darwin" else kib / 1024.0


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine()


def git_state():
    """Commit and whether streambp/ has uncommitted changes, for the record (None outside a checkout)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "streambp"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return {"commit": head.stdout.strip(), "streambp_dirty": bool(dirty.stdout.strip())}


def gemm_rates(n, repeats, cooldown, libs=("numpy", "scipy_blas")):
    """float32 GEMM GFLOP/s of an n x n x n product by each of `libs`: np.dot, scipy's BLAS (what Numba's
    np.dot calls), torch.mm (in the PyTorch worker); median and max over `repeats` timed calls after one
    warm-up call each (and a cool-down sleep before each library, see bench_point)."""
    import numpy as np

    rng = np.random.default_rng(1)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    funcs = {}
    if "numpy" in libs:
        funcs["numpy"] = lambda: np.dot(a, b, out=c)
    if "scipy_blas" in libs:
        import scipy.linalg.blas as sblas

        # sgemm on Fortran-ordered operands into a preallocated Fortran-ordered output
        fa, fb, cf = np.asfortranarray(a), np.asfortranarray(b), np.asfortranarray(c)
        funcs["scipy_blas"] = lambda: sblas.sgemm(1.0, fa, fb, c=cf, overwrite_c=True)
    if "torch" in libs:
        import torch

        ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c)
        funcs["torch"] = lambda: torch.mm(ta, tb, out=tc)
    flops = 2.0 * n ** 3
    out = {}
    for name, f in funcs.items():
        time.sleep(cooldown)
        f()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        rates = [flops / t / 1e9 for t in ts]
        out[name] = {"median": statistics.median(rates), "max": max(rates)}
    return out


def all_gemm_rates(n, repeats, cooldown, workers):
    """gemm_rates here (numpy, scipy_blas) and torch.mm in the PyTorch worker, if there is one."""
    out = gemm_rates(n, repeats, cooldown)
    if "pytorch" in workers:
        out.update(workers["pytorch"].call("gemm", n=n, repeats=repeats, cooldown=cooldown)["rates"])
    return out


# ---------------------------------------------------------------------------------------------------------
# Benchmark.


def make_data(sizes, rows, seed=0):
    """Random rows (standard normal features, uniform labels); deterministic in (sizes, rows, seed)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    D, K = sizes[0], sizes[-1]
    X = rng.standard_normal((rows, D), dtype=np.float32)
    y = rng.integers(0, K, size=rows).astype(np.int32)
    onehot = np.zeros((rows, K), dtype=np.float32)
    onehot[np.arange(rows), y] = 1.0
    return {"X": X, "y": y, "y64": y.astype(np.int64), "onehot": onehot, "seed": seed}


def data_digest(data):
    """CRC-32 of the features and labels (computed once per data set)."""
    if "digest" not in data:
        data["digest"] = zlib.crc32(data["y"], zlib.crc32(data["X"]))
    return data["digest"]


def timed(f, n):
    t0 = time.perf_counter()
    f(n)
    return time.perf_counter() - t0


def calibrate(impl, target_s, budget_s, fixed_steps, cooldown):
    """Warm up (JIT, first steps), then pick a step count that runs about target_s."""
    time.sleep(cooldown)
    t_first = timed(impl.run, 2)  # includes Numba's compile / cache load, PyTorch's first allocations
    n, t = 1, 0.0
    while True:
        t = timed(impl.run, n)
        if t >= budget_s or n >= 1 << 20:
            break
        n *= 2
    per_step = t / n
    steps = fixed_steps or max(1, round(target_s / per_step))
    return {"first_2_steps_s": t_first, "warm_step_s": per_step, "steps_per_repeat": steps}


def check_equivalence(names, workers):
    """The implementations `names`, from streambp's initial weights, take the same 8 SGD steps as streambp:
    compare losses and parameters (the PyTorch and scikit-learn ones in their workers)."""
    import numpy as np

    sizes, batch, lr, steps = [54, 24, 16, 7], 32, 0.1, 8
    data = make_data(sizes, 256, seed=7)
    theta0 = StreambpImpl(sizes, data, batch, lr).theta()
    ref = "streambp"
    names = [ref] + [n for n in names if n != ref]
    impls = [new_impl(name, sizes, data, batch, lr, workers, theta=theta0) for name in names]
    losses = {im.name: [im.run(1) for _ in range(steps)] for im in impls}
    thetas = {im.name: im.theta() for im in impls}
    res = {}
    for name in names[1:]:
        res[f"{name}_max_abs_loss_diff"] = float(np.max(np.abs(np.subtract(losses[name], losses[ref]))))
        res[f"{name}_max_abs_theta_diff"] = float(np.max(np.abs(thetas[name] - thetas[ref])))
    res["ok"] = all(v < 1e-4 for v in res.values())
    res["losses"] = losses
    return res


def bench_point(net, sizes, batch, data, args, meter, workers):
    impls = [new_impl(name, sizes, data, batch, args.lr, workers) for name in args.impls]
    cal = {im.name: calibrate(im, args.seconds, args.calibrate_seconds, args.steps, args.cooldown)
           for im in impls}
    eps = {im.name: [] for im in impls}
    cpu = {im.name: {"wall": 0.0, "own": 0.0, "other": 0.0, "steal": 0.0} for im in impls}
    for r in range(args.repeats):
        k = r % len(impls)
        for im in impls[k:] + impls[:k]:  # rotate the order every repeat
            steps = cal[im.name]["steps_per_repeat"]
            # OpenBLAS's worker threads spin ~0.1 s after each call before they sleep (numpy and scipy,
            # Numba's np.dot, each bring their own OpenBLAS), and so do PyTorch's OpenMP threads: without
            # a pause the previous implementation's spinning threads would steal a core from this one.
            time.sleep(args.cooldown)
            s0 = meter.snapshot()
            im.run(steps)  # a worker's run includes one pipe round trip, well under 1 ms
            s1 = meter.snapshot()
            wall, own, other, steal = meter.delta(s0, s1)
            eps[im.name].append(steps * batch / wall)
            c = cpu[im.name]
            c["wall"] += wall
            c["own"] += own
            c["other"] = None if other is None or c["other"] is None else c["other"] + other
            c["steal"] = None if steal is None or c["steal"] is None else c["steal"] + steal
    flops = train_flops(sizes, batch)
    point = {"net": net, "sizes": sizes, "batch": batch, "flops_per_step": flops, "impls": {}}
    for im in impls:
        v, c = eps[im.name], cpu[im.name]
        med = statistics.median(v)
        point["impls"][im.name] = {
            "examples_per_s": {"median": med, "min": min(v), "max": max(v), "all": v},
            "gflops_median": med / batch * flops / 1e9,
            "cpu_used_by_us": c["own"] / c["wall"],  # cores busy in our processes (incl. spinning)
            "cpu_other_fraction": None if c["other"] is None else c["other"] / (c["wall"] * meter.ncpu),
            "steal_fraction": None if c["steal"] is None else c["steal"] / (c["wall"] * meter.ncpu),
            **cal[im.name],
        }
    s = point["impls"].get("streambp")
    point["ratios"] = {f"streambp/{n}": s["examples_per_s"]["median"] / o["examples_per_s"]["median"]
                       for n, o in point["impls"].items() if s and n != "streambp"}
    point["peak_rss_mib_so_far"] = peak_rss_mib()
    return point


def fmt_eps(x):
    return f"{x / 1e3:.1f}k" if x >= 1e4 else f"{x / 1e3:.2f}k" if x >= 1e3 else f"{x:.0f}"


def table(results):
    impls = results["config"]["impls"]
    ref = results["gemm_gflops"]["start_and_end_median"]["numpy"]
    head = ["net", "sizes", "B"] + [f"{n} ex/s median [min-max]" for n in impls]
    ratio_cols = [n for n in impls if n != "streambp"] if "streambp" in impls else []
    head += [f"streambp/{n}" for n in ratio_cols]
    head += ["GFLOP/s " + " / ".join(impls), "% of np.dot GEMM " + " / ".join(impls), "other CPU %"]
    rows = []
    for p in results["points"]:
        im = p["impls"]
        row = [p["net"], "-".join(map(str, p["sizes"])), str(p["batch"])]
        for n in impls:
            e = im[n]["examples_per_s"]
            row.append(f"{fmt_eps(e['median'])} [{fmt_eps(e['min'])}-{fmt_eps(e['max'])}]")
        row += [f"{p['ratios'][f'streambp/{n}']:.2f}x" for n in ratio_cols]
        row.append(" / ".join(f"{im[n]['gflops_median']:.1f}" for n in impls))
        row.append(" / ".join(f"{100 * im[n]['gflops_median'] / ref:.0f}" for n in impls))
        row.append(f"{100 * disturbance(p):.0f}" + (" *" if p["disturbed"] else ""))
        rows.append(row)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for every library "
                    "(default: all cores)")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per implementation and point "
                    "(default 5; 2 with --quick)")
    ap.add_argument("--seconds", type=float, default=None, help="target seconds per timed run "
                    "(default 0.6; 0.05 with --quick)")
    ap.add_argument("--steps", type=int, default=None, help="fixed steps per timed run instead of --seconds")
    ap.add_argument("--nets", default="A,B,C,D", help="subset of " + ", ".join(
        f"{k}={'-'.join(map(str, v))}" for k, v in NETS.items()) + " (default A,B,C,D)")
    ap.add_argument("--batches", default=None, help="comma-separated batch sizes for every net (default: "
                    "32,128,512 for A, B, C and 512 only for D)")
    ap.add_argument("--impls", default=",".join(IMPLS), help="subset of " + ",".join(IMPLS))
    ap.add_argument("--rows", type=int, default=16384, help="rows of the random in-memory data set")
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--json", metavar="PATH", help="write all results as JSON to PATH")
    ap.add_argument("--quick", action="store_true", help="few steps and small GEMM, for smoke tests")
    ap.add_argument("--no-check", action="store_true", help="skip the check that the implementations "
                    "compute the same steps as streambp")
    ap.add_argument("--cooldown", type=float, default=0.2, help="seconds of sleep before each timed run, "
                    "so that the previous library's spinning BLAS threads have gone to sleep (default 0.2)")
    ap.add_argument("--quiet-threshold", type=float, default=0.05, help="a point is disturbed when other "
                    "processes used more than this fraction of the machine's CPU during it (default 0.05)")
    ap.add_argument("--retries", type=int, default=None, help="re-measure a disturbed point up to this many "
                    "times, keeping the least disturbed attempt (default 2; 0 with --quick)")
    ap.add_argument("--wait", type=float, default=None, help="before each point and GEMM measurement wait up "
                    "to this many seconds for the machine to be quiet (default 30; 0 with --quick)")
    ap.add_argument("--noise-budget", type=float, default=None, help="at most this many seconds in all "
                    "for waiting and re-measuring, so a busy machine cannot stretch the run without bound "
                    "(default 150; 0 with --quick)")
    ap.add_argument("--omp-wait-policy", choices=["PASSIVE", "ACTIVE"], default=None,
                    help="set OMP_WAIT_POLICY for every process, as if in the environment (otherwise "
                    "streambp's import sets PASSIVE in the main process and the workers keep the user's)")
    ap.add_argument("--worker", choices=WORKER_IMPLS, help=argparse.SUPPRESS)  # internal: see worker_main
    a = ap.parse_args(argv)
    if a.worker:
        return a
    a.repeats = a.repeats or (2 if a.quick else 5)
    a.seconds = a.seconds or (0.05 if a.quick else 0.6)
    a.retries = (0 if a.quick else 2) if a.retries is None else a.retries
    a.wait = (0.0 if a.quick else 30.0) if a.wait is None else a.wait
    a.noise_budget = (0.0 if a.quick else 150.0) if a.noise_budget is None else a.noise_budget
    a.calibrate_seconds = 0.02 if a.quick else 0.15
    a.nets = [n.strip().upper() for n in a.nets.split(",") if n.strip()]
    a.impls = [n.strip().lower() for n in a.impls.split(",") if n.strip()]
    for n in a.nets:
        if n not in NETS:
            ap.error(f"unknown net {n!r}; choose from {','.join(NETS)}")
    for n in a.impls:
        if n not in IMPL_CLASSES:
            ap.error(f"unknown implementation {n!r}; choose from {','.join(IMPLS)}")
    a.batch_list = None if a.batches is None else [int(b) for b in a.batches.split(",")]
    if a.rows < max(a.batch_list or [512]):
        ap.error("--rows must be at least the largest batch size")
    return a


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    if args.omp_wait_policy:
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy
    import numpy as np

    early_omp = loaded_openmp_runtimes()
    if early_omp:
        print("WARNING: an OpenMP runtime was loaded before streambp (" + ", ".join(early_omp) + "). Its "
              "wait policy is then fixed without OMP_WAIT_POLICY=PASSIVE and Numba's OpenMP loops may share "
              "it: streambp's figures can collapse.", file=sys.stderr)
    import streambp  # sets OMP_WAIT_POLICY (here only) and chooses Numba's threading layer
    import streambp.threads


    np.seterr(over="ignore")  # exp(-z) of a very negative z -> inf -> sigmoid 0, as intended
    threads = streambp.threads.configure(args.threads)
    env = worker_env(args.omp_wait_policy)
    workers = {}
    try:
        for name in args.impls:
            if name in WORKER_IMPLS:
                workers[name] = Worker(name, threads, env)
        return run_benchmark(args, threads, early_omp, env, workers)
    finally:
        for w in workers.values():
            w.close()


def run_benchmark(args, threads, early_omp, env, workers):
    import numba
    import numpy as np
    import scipy
    import threadpoolctl

    import streambp
    import streambp.threads

    meter = CpuMeter(w.pid for w in workers.values())
    started = datetime.datetime.now(datetime.timezone.utc)
    t_start = time.perf_counter()
    env_keys = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_WAIT_POLICY", "NUMBA_THREADING_LAYER",
                "OMP_NUM_THREADS")
    results = {
        "config": {"threads": threads, "repeats": args.repeats, "seconds_per_repeat": args.seconds,
                   "cooldown_s": args.cooldown, "quiet_threshold": args.quiet_threshold,
                   "retries": args.retries, "wait_s": args.wait, "noise_budget_s": args.noise_budget,
                   "fixed_steps": args.steps, "rows": args.rows, "lr": args.lr, "quick": args.quick,
                   "nets": {n: NETS[n] for n in args.nets}, "impls": args.impls,
                   "own_process": [n for n in args.impls if n in workers]},
        "machine": {
            "date_utc": started.isoformat(timespec="seconds"), "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "openmp_loaded_before_streambp": early_omp,
            "env": {k: os.environ.get(k) for k in env_keys},  # the main process, after streambp's import
            "worker_env": {k: env.get(k) for k in env_keys},
        },
        "git": git_state(),
        "versions": {"python": platform.python_version(), "streambp": streambp.__version__,
                     "numpy": np.__version__, "numba": numba.__version__, "scipy": scipy.__version__,
                     "threadpoolctl": threadpoolctl.__version__,
                     **{k: v for w in workers.values() for k, v in w.info["versions"].items()
                        if k != "numpy"}},
        "threads_info": {**streambp.threads.info(),
                         "threadpoolctl": [{k: p.get(k) for k in ("user_api", "internal_api", "prefix",
                                                                  "version", "num_threads", "architecture")}
                                           for p in threadpoolctl.threadpool_info()],
                         "workers": {n: w.info for n, w in workers.items()}},
    }
    layer = results["threads_info"]["numba_threading_layer"]
    print(f"streambp kernel benchmark  {results['machine']['date_utc']}  {results['machine']['cpu_model']}, "
          f"{os.cpu_count()} CPUs, {threads} threads, Numba layer {layer}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items())
          + (f"; git {results['git']['commit']}" + (" + uncommitted streambp changes"
                                                     if results["git"]["streambp_dirty"] else "")
             if results["git"] else ""))
    if workers:
        print("own processes with the user's environment: " + ", ".join(
            f"{n} (pid {w.pid}, OMP_WAIT_POLICY {w.info['omp_wait_policy'] or 'unset'})"
            for n, w in workers.items())
              + f"; main process OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY') or 'unset'}")

    if not args.no_check:
        chk = check_equivalence(args.impls, workers)
        results["equivalence_check"] = chk
        diffs = {k: v for k, v in chk.items() if k.endswith("diff")}
        print("equivalence check (8 SGD steps from the same weights, vs streambp): "
              + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()) + ("  OK" if chk["ok"] else "  MISMATCH"))

    gemm_n, gemm_rep = (512, 2) if args.quick else (2048, 5)
    if args.wait:
        wait_quiet(meter, args.quiet_threshold, args.wait)
    g0 = all_gemm_rates(gemm_n, gemm_rep, args.cooldown, workers)
    print(f"float32 GEMM {gemm_n}^3 at start, GFLOP/s median: "
          + ", ".join(f"{k} {v['median']:.1f}" for k, v in g0.items()))

    results["points"] = []
    extra_s = 0.0  # seconds spent waiting for quiet and re-measuring, bounded by --noise-budget
    for net in args.nets:
        sizes = NETS[net]
        data = make_data(sizes, args.rows, seed=0)
        for batch in args.batch_list or DEFAULT_BATCHES[net]:
            p, attempts = None, []
            for k in range(args.retries + 1):
                if k > 0 and extra_s >= args.noise_budget:
                    break  # out of time for noise: keep the point, marked disturbed
                t0 = time.perf_counter()
                waited = 0.0
                if args.wait and extra_s < args.noise_budget:
                    waited = wait_quiet(meter, args.quiet_threshold,
                                        min(args.wait, args.noise_budget - extra_s))[0]
                q = bench_point(net, sizes, batch, data, args, meter, workers)
                extra_s += waited + (time.perf_counter() - t0 - waited if k > 0 else 0.0)
                attempts.append({"waited_s": waited, "other_cpu_fraction": disturbance(q)})
                if p is None or disturbance(q) < disturbance(p):
                    p = q
                if disturbance(q) <= args.quiet_threshold:
                    break
            p["attempts"] = attempts
            p["disturbed"] = disturbance(p) > args.quiet_threshold
            results["points"].append(p)
            im = p["impls"]
            print(f"  {net} {'-'.join(map(str, sizes))} B={batch}: "
                  + ", ".join(f"{n} {fmt_eps(im[n]['examples_per_s']['median'])} ex/s" for n in args.impls)
                  + "  " + ", ".join(f"{k} {v:.2f}x" for k, v in p["ratios"].items())
                  + f"  (other CPU {100 * disturbance(p):.0f}%, {len(attempts)} attempt(s))", flush=True)
        del data

    if args.wait:
        wait_quiet(meter, args.quiet_threshold, args.wait)
    g1 = all_gemm_rates(gemm_n, gemm_rep, args.cooldown, workers)
    print(f"float32 GEMM {gemm_n}^3 at end,   GFLOP/s median: "
          + ", ".join(f"{k} {v['median']:.1f}" for k, v in g1.items()))
    results["gemm_gflops"] = {
        "n": gemm_n, "start": g0, "end": g1,
        "start_and_end_median": {k: statistics.median([g0[k]["median"], g1[k]["median"]]) for k in g0},
    }
    results["noise_seconds_spent"] = extra_s
    results["peak_rss_mib"] = peak_rss_mib()
    results["worker_peak_rss_mib"] = {n: (w.close() or {}).get("peak_rss_mib") for n, w in workers.items()}
    results["wall_s"] = time.perf_counter() - t_start

    ref = results["gemm_gflops"]["start_and_end_median"]
    print()
    print(table(results))
    print()
    print(f"GEMM reference (float32 {gemm_n}^3, {threads} threads, mean of start/end medians): "
          + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in ref.items())
          + f".  Peak RSS {results['peak_rss_mib']:.0f} MiB"
          + "".join(f", {n} worker {v:.0f} MiB" for n, v in results["worker_peak_rss_mib"].items() if v)
          + f".  Wall {results['wall_s']:.0f} s.")
    print("FLOPs per step = 2 B (3 sum_l I_l O_l - I_1 O_1): forward, weight gradients, input gradients "
          "of every layer but the first; element-wise work not counted.")
    print("'other CPU %': CPU time other processes used during the timed runs, in % of the machine "
          "(worst implementation of the point); * marks a point still above "
          f"{100 * args.quiet_threshold:.0f}% after its retries (disturbed: do not trust it).")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
        print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
