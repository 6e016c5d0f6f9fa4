"""Linear probe classifiers in torch, on the probe's device (METHODS.md §6), with scikit-learn's objectives:

- `TorchLogistic`: standardised features, multinomial logistic regression, the objective LogisticRegression
  minimises: mean cross-entropy + ‖W‖²/(2·C·n), the intercept not penalised (two classes: one binary model, as
  scikit-learn fits it);
- `TorchLinearSVM`: standardised features, one-vs-rest linear SVM with the squared hinge (LinearSVC's default),
  every class at once: Σ_k ‖w_k‖²/2 + C·Σ_i max(0, 1 − y_ik·(w_k·x_i + b_k))², divided by C·n; the intercept is
  penalised like liblinear's bias feature.

Both are solved by full-batch L-BFGS (torch.optim.LBFGS, strong-Wolfe line search) from zero weights. Every
evaluation is one pass over the training rows in a fixed order, in blocks of about BLOCK_FLOATS floats, so a fit
is deterministic (nothing is drawn), the features stay float32 and the memory beyond them is a block plus the
weights (float64, so the optimiser's curvature pairs stay exact). Rows come from a V×K×D (or N×D) tensor or from
anything with `.shape` and `.chunks()` yielding V_i×K×D tensors in order, such as a sharded feature on disk.

Rows are standardised explicitly, (x − μ)·σ⁻¹, not by folding σ⁻¹ into the weights: folded, a feature whose mean is
large against its spread cancels catastrophically in float32 (logits and gradient both), and the line search then
stalls on noise. The standardised rows are kept when they fit (STANDARDISED_BYTES on the CPU, half the free memory
of a GPU), so later passes neither re-read a chunked source nor standardise again; otherwise each block is
standardised as it is read.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from avcli.evaluate.feature_shards import feature_chunks

BLOCK_FLOATS = {"cpu": 1 << 23, "cuda": 1 << 27}  # 32 MiB blocks on a CPU (cache-sized); 512 MiB on a GPU
# at most this many columns of logits, the gradient's product is taken as (dzᵀ·x)ᵀ rather than xᵀ·dz: on a CPU the
# second form is 2-5× slower for narrow dz (16,384 × 512 rows, 50 columns: 15.6 against 7.2 ms; 2 columns 14.6 against
# 3.1) and the first 20-30 % slower for wide dz (400 columns: 95 against 72 ms), one thread, 2026-12-05
NARROW = 128
STANDARDISED_BYTES = 1 << 30  # a CPU keeps standardised rows up to 1 GiB (ESC-50's widest AVID layer: 0.6 GiB)


def feature_shape(features) -> tuple[int, int, int]:
    """(V, K, D) of a V×K×D or N×D (K = 1) tensor, or of a chunked feature."""
    shape = tuple(features.shape)
    return (shape[0], 1, shape[1]) if len(shape) == 2 else shape


def _block_rows(device: torch.device, width: int) -> int:
    return max(1, BLOCK_FLOATS.get(device.type, BLOCK_FLOATS["cpu"]) // max(width, 1))


class Rows:
    """The standardised training rows as (x R×D float32, column R long) blocks on `device`, in a fixed order:
    every video's K clips carry its label's column. `width` (the larger of D and the classes) sizes the blocks, so
    a block's logits are no bigger than its rows."""

    def __init__(self, features, columns: np.ndarray, device: torch.device, width: int):
        self.features, self.device = features, torch.device(device)
        self.videos, self.clips, self.dim = feature_shape(features)
        self.n = self.videos * self.clips
        if len(columns) != self.videos:
            raise ValueError(f"{len(columns)} labels for {self.videos} rows of features")
        self.columns = torch.as_tensor(np.asarray(columns), dtype=torch.long)
        self.rows_per_block = _block_rows(self.device, max(self.dim, width))
        self.mean, self.scale = self._standardiser()
        self._kept = list(self._read()) if self._fits() else None

    def _fits(self) -> bool:
        size = self.n * self.dim * 4
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            return size < free // 2
        return size <= STANDARDISED_BYTES

    def _raw(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        start = 0  # the first video of the current chunk
        for chunk in feature_chunks(self.features):
            v, k, d = chunk.shape
            flat = chunk.reshape(v * k, d)
            cols = self.columns[start : start + v].repeat_interleave(k)
            for lo in range(0, v * k, self.rows_per_block):
                x = flat[lo : lo + self.rows_per_block].to(self.device, torch.float32)
                yield x, cols[lo : lo + self.rows_per_block].to(self.device)
            start += v
        if start != self.videos:
            raise ValueError(f"the feature's chunks hold {start} videos, its shape says {self.videos}")

    def _standardiser(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, 1/std) over all rows, float32 on the device, from per-block figures merged in float64 (Chan et
        al.), so a long pass loses no precision; a constant feature gets scale 1, as StandardScaler gives it."""
        n, mean, m2 = 0, None, None
        for x, _ in self._raw():
            # a block's own mean and squared deviations in float32 (centred on that mean, so nothing cancels; a
            # float64 copy of the block cost more than the rest of the pass), merged in float64
            nb, mb = x.shape[0], x.mean(dim=0)
            m2b = (x - mb).square_().sum(dim=0).double()
            mb = mb.double()
            if mean is None:
                n, mean, m2 = nb, mb, m2b
                continue
            delta, total = mb - mean, n + nb
            mean = mean + delta * (nb / total)
            m2 = m2 + m2b + delta.square() * (n * nb / total)
            n = total
        if mean is None:
            raise ValueError("no training rows")
        var = m2 / n
        # StandardScaler's test (_is_constant_feature): a variance within the rounding error of its computation
        eps = torch.finfo(torch.float64).eps
        constant = var <= n * eps * var + (n * eps * mean).square()
        std = torch.where(constant, torch.ones_like(var), var.sqrt())
        return mean.float(), (1.0 / std).float()

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        """(x − μ)·σ⁻¹ as a new float32 tensor on the device (x itself may be a view of the caller's features)."""
        return torch.sub(x.to(self.device, torch.float32), self.mean).mul_(self.scale)

    def _read(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, cols in self._raw():
            yield self.standardise(x), cols

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return iter(self._kept) if self._kept is not None else self._read()


class _TorchLinear:
    """Shared by both: standardised rows, the L-BFGS fit over them, chunked scoring. tol: the largest entry of
    the mean objective's gradient at the stop, absolute (scikit-learn's lbfgs criterion) or, where
    `relative_tol`, as a fraction of the largest at the zero start (liblinear's, for the SVM)."""

    penalise_intercept = False
    relative_tol = False

    def __init__(self, c: float = 1.0, max_iter: int = 1000, tol: float = 1e-4, device: str | torch.device = "cpu",
                 history: int = 20):
        if c <= 0:
            raise ValueError(f"C must be positive, got {c}")
        self.c, self.max_iter, self.tol, self.history = float(c), int(max_iter), float(tol), int(history)
        self.device = torch.device(device)

    # --------------------------------------------------------------------------------------------- loss

    def _block(self, z: torch.Tensor, cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Σ of the rows' losses as float64, ∂/∂z of that sum) for logits z of one block; may overwrite z."""
        raise NotImplementedError  # each subclass defines its loss

    def _columns(self, classes: int) -> int:
        return classes

    def _reg(self, n: int) -> float:
        return 1.0 / (self.c * n)

    def _evaluate(self, theta: torch.Tensor, rows: Rows) -> tuple[float, torch.Tensor]:
        """(objective, its gradient) at theta = [W; b] (standardised-feature space, float64)."""
        w, b = theta[:-1].float(), theta[-1].float()
        grad = torch.zeros_like(theta)
        total = torch.zeros((), dtype=torch.float64, device=theta.device)
        for x, cols in rows:
            loss, dz = self._block(torch.addmm(b, x, w), cols)
            # float32 per block (a float64 reduction of a block would convert it whole: slower than the product),
            # summed across blocks in float64
            grad[:-1] += x.T @ dz if dz.shape[1] > NARROW else (dz.T @ x).T
            grad[-1] += dz.sum(dim=0)
            total += loss
        grad /= rows.n
        reg = self._reg(rows.n)
        penalty = theta if self.penalise_intercept else theta[:-1]
        grad[: penalty.shape[0]] += reg * penalty
        return float(total) / rows.n + 0.5 * reg * float(penalty.square().sum()), grad

    # ---------------------------------------------------------------------------------------------- fit

    def fit(self, train, labels) -> "_TorchLinear":
        """`train` V×K×D (K clips of each of V videos, one label each), N×D with one label per row, or a chunked
        feature; labels any integers."""
        labels = np.asarray(labels)
        self.classes_ = np.unique(labels)
        if len(self.classes_) < 2:
            raise ValueError(f"a classifier needs at least two classes in training, got {len(self.classes_)}")
        rows = Rows(train, np.searchsorted(self.classes_, labels), self.device, len(self.classes_))
        self.mean_, self.scale_ = rows.mean, rows.scale
        columns = self._columns(len(self.classes_))
        theta = torch.zeros(rows.dim + 1, columns, dtype=torch.float64, device=self.device, requires_grad=True)
        start = self._evaluate(theta.detach(), rows)  # the optimiser's first evaluation, here to set the tolerance
        self.tol_ = self.tol * float(start[1].abs().max()) if self.relative_tol else self.tol
        optimiser = torch.optim.LBFGS([theta], lr=1, max_iter=self.max_iter, max_eval=self.max_iter * 5 // 4 + 1,
                                      tolerance_grad=self.tol_, tolerance_change=1e-12, history_size=self.history,
                                      line_search_fn="strong_wolfe")
        # the line search evaluates points it then rejects, so the accepted point's figures are looked up by value
        # among the last evaluations (the optimiser recomputes that point bit for bit from the same step)
        recent: list[tuple[torch.Tensor, float, float]] = []

        def closure() -> float:
            nonlocal start
            loss, grad = start if start is not None else self._evaluate(theta.detach(), rows)
            start = None
            theta.grad = grad
            recent.append((theta.detach().clone(), loss, float(grad.abs().max())))
            del recent[:-30]  # more than a strong-Wolfe search evaluates (25)
            return loss

        # torch's first step is 1/‖g‖₁ (tiny for many weights), grown by the line search. A step minimising the
        # quadratic model at zero took a 400-class fit there in 6 evaluations instead of 14, but to a point that met
        # the same gradient rule at an objective of 0.209 against scikit-learn's 0.123 (optimum 0.120; 1.2 points
        # of accuracy away): the rule is loose on such plateaus, so the path that reaches it is kept like
        # scikit-learn's (2026-12-05, benchmarks/probe_classifiers.py)
        optimiser.step(closure)
        state = optimiser.state[theta]
        final = next((r for r in reversed(recent) if torch.equal(r[0], theta.detach())), recent[-1])
        self.n_iter_, self.n_evals_, self.loss_, self.grad_max_ = (int(state.get("n_iter", 0)),
                                                                   int(state["func_evals"]), final[1], final[2])
        self.converged_ = self.grad_max_ <= self.tol_
        weights = theta.detach().float()
        self.coef_, self.intercept_ = weights[:-1], weights[-1]
        return self

    # ------------------------------------------------------------------------------------------- scores

    def decision(self, x: torch.Tensor) -> torch.Tensor:
        """N×columns scores (logits or margins) of the rows of x (any device), on this probe's device."""
        step = _block_rows(self.device, max(x.shape[1], self.coef_.shape[1]))
        out = [torch.addmm(self.intercept_, torch.sub(x[lo : lo + step].to(self.device, torch.float32), self.mean_)
                           .mul_(self.scale_), self.coef_) for lo in range(0, x.shape[0], step)]
        return torch.cat(out) if out else torch.zeros(0, self.coef_.shape[1], device=self.device)

    def scores(self, x: torch.Tensor) -> np.ndarray:
        """N×C scores of N rows (higher: more likely), as the scikit-learn probes give them."""
        raise NotImplementedError  # each subclass says what its scores are


class TorchLogistic(_TorchLinear):
    """Multinomial logistic regression; `scores` are class probabilities. With two classes scikit-learn fits one
    binary model, w·x + b against 0 with penalty ‖w‖²/2C: here that is the logit of the second class against a
    first fixed at 0 (one column)."""

    def _columns(self, classes: int) -> int:
        return 1 if classes == 2 else classes

    def _block(self, z, cols):
        if z.shape[1] == 1:  # binary: log(1 + e^z) − y·z, gradient sigmoid(z) − y
            y = cols[:, None].to(z.dtype)
            loss = (torch.nn.functional.softplus(z) - y * z).sum(dtype=torch.float64)
            return loss, z.sigmoid_().sub_(y)
        # in place on z: element-wise passes over the logits cost as much as the product when classes are many
        rows = torch.arange(len(cols), device=z.device)
        true = z[rows, cols]
        top = z.amax(dim=1, keepdim=True)
        p = z.sub_(top).exp_()
        total = p.sum(dim=1, keepdim=True)
        loss = (top.squeeze(1) + total.squeeze(1).log() - true).sum(dtype=torch.float64)
        p.div_(total)
        p[rows, cols] -= 1.0  # softmax − one-hot
        return loss, p

    def scores(self, x: torch.Tensor) -> np.ndarray:
        z = self.decision(x)
        if z.shape[1] == 1:
            p = z.sigmoid()
            return torch.cat([1 - p, p], dim=1).cpu().numpy()
        return torch.softmax(z, dim=1).cpu().numpy()


class TorchLinearSVM(_TorchLinear):
    """One-vs-rest linear SVM, squared hinge; `scores` are the margins w_k·x + b_k (two classes: one model, its
    margin and the negated margin, as LinearSVC). max_iter: L-BFGS iterations for all classes together; tol:
    relative to the gradient at the start, since the squared hinge of (nearly) separable rows, as AVID's wide layers
    give, is tiny at the optimum and an absolute bound would stop at once."""

    penalise_intercept = True
    relative_tol = True

    def _columns(self, classes: int) -> int:
        return 1 if classes == 2 else classes

    def _block(self, z, cols):
        if z.shape[1] == 1:  # binary: the second class is +1, the first −1
            sign = cols[:, None].to(z.dtype).mul_(2).sub_(1)
            hinge = (1 - sign * z).clamp_min_(0)
            return hinge.square().sum(dtype=torch.float64), hinge.mul_(sign).mul_(-2)
        # the other classes' hinge max(0, 1 + z) everywhere, then the true class's max(0, 1 − z) in its column
        rows = torch.arange(len(cols), device=z.device)
        true = (1.0 - z[rows, cols]).clamp_min_(0.0)
        hinge = z.add_(1.0).clamp_min_(0.0)
        hinge[rows, cols] = true
        loss = hinge.square().sum(dim=1).sum(dtype=torch.float64)  # float32 within a row (see _evaluate)
        grad = hinge.mul_(2.0)
        grad[rows, cols] = true * -2.0
        return loss, grad

    def scores(self, x: torch.Tensor) -> np.ndarray:
        margins = self.decision(x)
        if margins.shape[1] == 1:
            margins = torch.cat([-margins, margins], dim=1)
        return margins.cpu().numpy()
