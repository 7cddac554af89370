"""Do the maps point at what the model uses? Deletion/insertion curves and model randomisation.

Pure functions over arrays, a fill function and a model callable (``docs/method.md`` §10):
nothing here reads or writes a file, and nothing here knows shap. The ``explain`` stage
hands in the masker its explainer uses (:func:`quakeshap.explain.explainers.masker_fill`)
and the model as shap sees it.

The unit
    One (frequency, time) cell of the ``(33, 96)`` image, its three channels E, N, Z
    together: 3168 cells. shap's inpainting masker refills a pixel position when any of its
    channels is hidden, so a cell is the smallest thing it can take away whole. A map ranks
    the cells by the sum over E, N, Z of the explained class's values (``rank_by:
    signed``: the strongest evidence *for* the class first) or of their magnitudes
    (``absolute``).
Deletion and insertion (Petsiuk et al. 2018, arXiv:1806.07421)
    Deletion takes the cells away in the map's order, ``n_steps`` equal steps from none to
    all, and follows the softmax probability of the explained class (for a one-output
    magnitude regression, the output itself); insertion starts from the image with every
    cell filled and puts the cells back in the same order. A map that
    ranks what the model uses first makes the deletion curve fall early (a small area under
    it) and the insertion curve rise early (a large area). Both are measured against the
    same curves for seeded random orders: ``deletion_gap = AUC(random) − AUC(map)`` and
    ``insertion_gap = AUC(map) − AUC(random)``, positive = better than random.
The fill (Rong et al. 2022, arXiv:2202.00449)
    What stands in for a removed cell decides what the curves measure: a fill the model has
    never seen can move the score by itself. Every explainer is scored with the fill of the
    configured ``shap.masker`` (``inpaint_telea`` by default), the fill the partition
    explainer's coalitions are made of, so that explainers are compared on equal terms.
Model randomisation (Adebayo et al. 2018, arXiv:1810.03292)
    The weighted layers are re-initialised one after the other from the output down
    (cumulatively: step ``k`` randomises the top ``k`` layers), each trace is explained again
    with the same explainer, and each map is compared with the trained model's by the
    Spearman correlation of its cells' ``|values|``. An explainer that depends on what the
    model learnt gives maps that decorrelate (towards 0) as the cascade goes down.

Captum 0.9.0 offers neither (its ``captum.metrics`` are infidelity and sensitivity), so
both are written here; ``docs/design.md`` says why Quantus, which has them, is not used.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from torch import nn

#: ``(H, W)`` boolean keep-mask (True = the cell stays) → the ``(H, W, C)`` image with every
#: other cell filled
Fill = Callable[[np.ndarray], np.ndarray]
#: ``(b, H, W, C)`` images → ``(b, n_outputs)`` logits
Predict = Callable[[np.ndarray], np.ndarray]

RANK_BY = ("signed", "absolute")


# --------------------------------------------------------------------------------------
# deletion and insertion
# --------------------------------------------------------------------------------------


def cell_scores(values: np.ndarray, rank_by: str = "signed") -> np.ndarray:
    """How much a map credits each cell: ``(H, W, C)`` → ``(H, W)`` float64.

    ``signed`` sums the channels' values, ``absolute`` their magnitudes.
    """
    values = np.asarray(values, dtype=np.float64)
    if rank_by == "signed":
        return values.sum(axis=-1)
    if rank_by == "absolute":
        return np.abs(values).sum(axis=-1)
    raise ValueError(f"rank_by {rank_by!r} is not one of {RANK_BY}")


def cell_order(scores: np.ndarray) -> np.ndarray:
    """Flat indices of the cells of ``scores`` ``(H, W)``, the highest first.

    Ties keep raster order (a stable sort), so that the order is reproducible.
    """
    return np.argsort(-np.asarray(scores, dtype=np.float64).ravel(), kind="stable")


def random_orders(n_cells: int, n_orders: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_orders, n_cells)`` random permutations of the cells, drawn from ``rng``."""
    orders = np.empty((n_orders, n_cells), dtype=np.int64)
    for row in orders:
        row[:] = rng.permutation(n_cells)
    return orders


def step_counts(n_cells: int, n_steps: int) -> np.ndarray:
    """Cells removed after each step: ``(n_steps + 1,)`` ints ``k · n_cells // n_steps``."""
    if not 1 <= n_steps <= n_cells:
        raise ValueError(f"n_steps {n_steps} must be in 1..{n_cells} (the number of cells)")
    return np.arange(n_steps + 1, dtype=np.int64) * n_cells // n_steps


def keep_mask(order: np.ndarray, n_removed: int, shape: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` booleans: True for the cells kept when the first ``n_removed`` of
    ``order`` are taken away."""
    keep = np.ones(int(np.prod(shape)), dtype=bool)
    keep[np.asarray(order)[:n_removed]] = False
    return keep.reshape(shape)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(b, n_outputs)`` logits, float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class Curves:
    """Deletion and insertion curves of several removal orders over one image."""

    fractions: np.ndarray  # (n_steps + 1,) fraction of the cells removed / inserted
    deletion: np.ndarray  # (n_orders, n_steps + 1, n_outputs) softmax probabilities
    insertion: np.ndarray  # (n_orders, n_steps + 1, n_outputs)


def _probabilities(
    masks: Sequence[np.ndarray], fill: Fill, predict: Predict, batch_size: int
) -> np.ndarray:
    """Softmax probabilities ``(len(masks), n_outputs)`` of the filled images; a model
    with one output (a magnitude regression) is followed by its output itself (a softmax
    over one output is constant)."""
    out = []
    for start in range(0, len(masks), batch_size):
        images = np.stack([fill(m) for m in masks[start : start + batch_size]])
        scores = np.asarray(predict(images), dtype=np.float64)
        out.append(scores if scores.shape[-1] == 1 else softmax(scores))
    return np.concatenate(out, axis=0)


def perturbation_curves(
    orders: np.ndarray,
    n_steps: int,
    shape: tuple[int, int],
    fill: Fill,
    predict: Predict,
    batch_size: int = 50,
) -> Curves:
    """Deletion and insertion curves of each order in ``orders`` ``(n_orders, H·W)``.

    Deletion step ``k`` takes away the first ``step_counts(H·W, n_steps)[k]`` cells of the
    order (``fill`` refills them); insertion step ``k`` keeps only those cells and fills the
    rest. The two end points (the image itself, the image with every cell filled) are
    evaluated once for all orders; the images go to ``predict`` ``batch_size`` at a time.
    """
    orders = np.atleast_2d(np.asarray(orders))
    n_cells = int(np.prod(shape))
    counts = step_counts(n_cells, n_steps)
    masks = [np.ones(shape, dtype=bool), np.zeros(shape, dtype=bool)]
    for order in orders:
        for k in counts[1:-1]:
            deleted = keep_mask(order, int(k), shape)
            masks += [deleted, ~deleted]  # insertion keeps exactly what deletion took
    probs = _probabilities(masks, fill, predict, batch_size)
    image, filled = probs[0], probs[1]
    n_outputs = probs.shape[1]
    inner = probs[2:].reshape(len(orders), n_steps - 1, 2, n_outputs)
    deletion = np.empty((len(orders), n_steps + 1, n_outputs))
    insertion = np.empty_like(deletion)
    deletion[:, 0], deletion[:, -1], deletion[:, 1:-1] = image, filled, inner[:, :, 0]
    insertion[:, 0], insertion[:, -1], insertion[:, 1:-1] = filled, image, inner[:, :, 1]
    return Curves(counts / n_cells, deletion, insertion)


def auc(fractions: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Area under curves sampled at ``fractions`` (0..1), trapezoid rule, over the last
    axis of ``scores``."""
    return np.trapezoid(np.asarray(scores, dtype=np.float64), np.asarray(fractions), axis=-1)


# --------------------------------------------------------------------------------------
# the numbers of a set of maps
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Faithfulness:
    """Faithfulness numbers of a set of maps, one row per map (areas: probability × fraction)."""

    deletion_auc: np.ndarray  # (n_maps,) float64, the map's order
    insertion_auc: np.ndarray  # (n_maps,)
    random_deletion_auc: np.ndarray  # (n_maps,) mean over the random orders
    random_insertion_auc: np.ndarray  # (n_maps,)
    #: the cascade's steps, top layer first; step k randomises layers[: k + 1]
    layers: tuple[str, ...]
    spearman: np.ndarray  # (n_maps, len(layers)) float64; NaN where not computed
    randomised: np.ndarray  # (n_maps,) bool: the map went through the cascade

    @property
    def deletion_gap(self) -> np.ndarray:
        """``AUC(random) − AUC(map)`` of deletion: positive = falls faster than random."""
        return self.random_deletion_auc - self.deletion_auc

    @property
    def insertion_gap(self) -> np.ndarray:
        """``AUC(map) − AUC(random)`` of insertion: positive = rises faster than random."""
        return self.insertion_auc - self.random_insertion_auc


def deletion_insertion(
    maps: np.ndarray,
    classes: Sequence[int],
    fill: Fill,
    predict: Predict,
    n_steps: int,
    n_random: int,
    rank_by: str,
    rng: np.random.Generator,
    batch_size: int = 50,
) -> Faithfulness:
    """Deletion and insertion areas of one image's maps, and of random orders.

    Parameters
    ----------
    maps
        ``(n_maps, H, W, C)``: map ``i`` explains output ``classes[i]`` of ``predict``.
    fill, predict
        The image's fill (:data:`Fill`) and the model (:data:`Predict`), in the same units.
    n_steps, n_random, rank_by
        Steps of the curves, random orders drawn from ``rng``, how cells are ranked.

    Returns
    -------
    One row per map, scored by the softmax probability of its class; the random orders
    are shared by the maps and scored for each map's class. No cascade (``layers`` empty).
    """
    maps = np.asarray(maps)
    shape = (maps.shape[1], maps.shape[2])
    n_cells = shape[0] * shape[1]
    own = np.stack([cell_order(cell_scores(m, rank_by)) for m in maps])
    orders = np.concatenate([own, random_orders(n_cells, n_random, rng)])
    curves = perturbation_curves(orders, n_steps, shape, fill, predict, batch_size)
    deletion = auc(curves.fractions, np.moveaxis(curves.deletion, 1, -1))  # (orders, out)
    insertion = auc(curves.fractions, np.moveaxis(curves.insertion, 1, -1))
    rows = np.arange(len(maps))
    cls = np.asarray(classes, dtype=np.int64)
    return Faithfulness(
        deletion_auc=deletion[rows, cls],
        insertion_auc=insertion[rows, cls],
        random_deletion_auc=deletion[len(maps) :, cls].mean(axis=0),
        random_insertion_auc=insertion[len(maps) :, cls].mean(axis=0),
        layers=(),
        spearman=np.empty((len(maps), 0)),
        randomised=np.zeros(len(maps), dtype=bool),
    )


def with_randomisation(
    scores: Faithfulness, layers: Sequence[str], spearman: np.ndarray
) -> Faithfulness:
    """``scores`` completed with the cascade's correlations ``(n_maps, len(layers))``."""
    spearman = np.asarray(spearman, dtype=np.float64).reshape(len(scores.deletion_auc), -1)
    return Faithfulness(
        scores.deletion_auc,
        scores.insertion_auc,
        scores.random_deletion_auc,
        scores.random_insertion_auc,
        tuple(layers),
        spearman,
        np.ones(len(scores.deletion_auc), dtype=bool),
    )


def concatenate(parts: Sequence[Faithfulness]) -> Faithfulness:
    """The rows of ``parts`` in order; maps without a cascade get NaN correlations."""
    layers = next((p.layers for p in parts if p.layers), ())
    for part in parts:
        if part.layers and part.layers != layers:
            raise ValueError(f"cascades over different layers: {part.layers} and {layers}")
    spearman = [
        p.spearman if p.layers else np.full((len(p.deletion_auc), len(layers)), np.nan)
        for p in parts
    ]
    return Faithfulness(
        *(
            np.concatenate([getattr(p, name) for p in parts])
            for name in (
                "deletion_auc",
                "insertion_auc",
                "random_deletion_auc",
                "random_insertion_auc",
            )
        ),
        layers=layers,
        spearman=np.concatenate(spearman, axis=0),
        randomised=np.concatenate([p.randomised for p in parts]),
    )


# --------------------------------------------------------------------------------------
# model randomisation
# --------------------------------------------------------------------------------------


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of two maps' cell magnitudes (``|values|`` summed over the
    channels of ``(H, W, C)``); NaN when either map is constant."""
    x = np.abs(np.asarray(a, dtype=np.float64)).sum(axis=-1).ravel()
    y = np.abs(np.asarray(b, dtype=np.float64)).sum(axis=-1).ravel()
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return float(stats.spearmanr(x, y).statistic)


def cascade_layers(net: nn.Module) -> list[tuple[str, tuple[nn.Module, ...]]]:
    """The weighted layers of ``net``, from the output down: ``[(name, modules), ...]``.

    Convolutions are ``conv1, conv2, ...`` and linear layers ``fc1, fc2, ...`` in the order
    of the forward pass (the study's checkpoint names them so); a batch norm belongs to the
    convolution before it.
    """
    layers: list[tuple[str, list[nn.Module]]] = []
    n_conv = n_fc = 0
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            n_conv += 1
            layers.append((f"conv{n_conv}", [module]))
        elif isinstance(module, nn.Linear):
            n_fc += 1
            layers.append((f"fc{n_fc}", [module]))
        elif isinstance(module, nn.BatchNorm2d) and layers and layers[-1][0].startswith("conv"):
            layers[-1][1].append(module)
    return [(name, tuple(modules)) for name, modules in reversed(layers)]


def reinitialise(modules: Sequence[nn.Module], generator: torch.Generator) -> None:
    """Draw new weights, in place, from PyTorch's default initial distribution.

    Convolutions and linear layers: weights and biases uniform in ``±1/sqrt(fan_in)`` (what
    ``reset_parameters`` draws), from ``generator``; batch norms back to their initial
    state (unit scale, zero shift, running mean 0 and variance 1).
    """
    with torch.no_grad():
        for module in modules:
            if isinstance(module, nn.Conv2d | nn.Linear):
                bound = 1.0 / math.sqrt(module.weight[0].numel())
                module.weight.uniform_(-bound, bound, generator=generator)
                if module.bias is not None:
                    module.bias.uniform_(-bound, bound, generator=generator)
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()
            else:
                raise TypeError(f"cannot re-initialise a {type(module).__name__}")


def randomisation_cascade(
    net: nn.Module, generator: torch.Generator
) -> Iterator[tuple[str, nn.Module]]:
    """Adebayo et al.'s cascade: ``(layer, model)`` with every layer from the output down to
    ``layer`` re-initialised, top layer first. ``net`` itself is left as it is."""
    model = copy.deepcopy(net)
    for name, modules in cascade_layers(model):
        reinitialise(modules, generator)
        yield name, copy.deepcopy(model)
