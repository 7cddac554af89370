"""Faithfulness checks: deletion/insertion curves against hand-computed ones, the rank
correlation, the randomisation cascade, determinism, and integrated gradients' completeness."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from quakeshap import explain as ex
from quakeshap.config import ConfigError, FaithfulnessConfig, ShapConfig
from quakeshap.explain import ExplainError
from quakeshap.explain import faithfulness as fa
from quakeshap.explain.explainers import cascade_max_evals
from quakeshap.model import CNN2D, ModelConfig
from tests.fixtures import make_checkpoint

#: a 1 × 4 image of one channel, pixel values 1, 2, 3, 4
TINY = np.array([[[1.0], [2.0], [3.0], [4.0]]])


def zero_fill(image: np.ndarray):
    """Constant fill 0: a removed cell becomes 0 (shap's masker with ``mask_value`` 0)."""

    def fill(keep: np.ndarray) -> np.ndarray:
        return image * keep[:, :, None]

    return fill


def probability_model(p_of_image):
    """A model whose class-0 softmax probability is ``p_of_image(image)`` exactly: logits
    ``log p, log(1 − p)``."""

    def predict(images: np.ndarray) -> np.ndarray:
        p = np.array([p_of_image(image) for image in images])
        with np.errstate(divide="ignore"):
            return np.log(np.stack([p, 1 - p], axis=1))

    return predict


#: linear in the pixels: p = sum / 20 (0.5 for the whole image, 0 when all is removed)
LINEAR = probability_model(lambda image: image.sum() / 20.0)
#: the fraction of the cells still there (every cell weighs the same)
FRACTION_KEPT = probability_model(lambda image: np.count_nonzero(image) / image.size)


# --------------------------------------------------------------------------------------
# deletion and insertion, by hand
# --------------------------------------------------------------------------------------


def test_step_counts_and_keep_masks():
    np.testing.assert_array_equal(fa.step_counts(4, 4), [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(fa.step_counts(3168, 20)[:3], [0, 158, 316])
    assert fa.step_counts(3168, 20)[-1] == 3168
    order = np.array([3, 0, 2, 1])
    np.testing.assert_array_equal(fa.keep_mask(order, 2, (2, 2)), [[False, True], [True, False]])
    with pytest.raises(ValueError, match="n_steps 5"):
        fa.step_counts(4, 5)


def test_cell_scores_and_order():
    values = np.array([[[1.0, -3.0], [0.5, 0.5]]])  # cells: sum -2 / 1, |.| 4 / 1
    np.testing.assert_array_equal(fa.cell_scores(values, "signed"), [[-2.0, 1.0]])
    np.testing.assert_array_equal(fa.cell_scores(values, "absolute"), [[4.0, 1.0]])
    np.testing.assert_array_equal(fa.cell_order(fa.cell_scores(values, "signed")), [1, 0])
    np.testing.assert_array_equal(fa.cell_order(fa.cell_scores(values, "absolute")), [0, 1])
    np.testing.assert_array_equal(fa.cell_order(np.zeros((2, 2))), [0, 1, 2, 3])  # ties: raster
    with pytest.raises(ValueError, match="rank_by"):
        fa.cell_scores(values, "positive")


def test_linear_model_curves_and_areas_by_hand():
    """Order 4, 3, 2, 1 (the exact attribution of a linear model with a zero baseline)."""
    curves = fa.perturbation_curves(
        np.array([[3, 2, 1, 0]]), 4, (1, 4), zero_fill(TINY), LINEAR, batch_size=3
    )
    np.testing.assert_allclose(curves.fractions, [0, 0.25, 0.5, 0.75, 1])
    # deletion: 10, 6, 3, 1, 0 left, /20
    np.testing.assert_allclose(curves.deletion[0, :, 0], [0.5, 0.3, 0.15, 0.05, 0.0])
    # insertion: 0, 4, 7, 9, 10 inserted, /20
    np.testing.assert_allclose(curves.insertion[0, :, 0], [0.0, 0.2, 0.35, 0.45, 0.5])
    np.testing.assert_allclose(curves.deletion[0, :, 1], 1 - curves.deletion[0, :, 0])
    # trapezoids: 0.25 · (0.5/2 + 0.3 + 0.15 + 0.05 + 0/2) and 0.25 · (0.2 + 0.35 + 0.45 + 0.5/2)
    assert fa.auc(curves.fractions, curves.deletion[0, :, 0]) == pytest.approx(0.1875)
    assert fa.auc(curves.fractions, curves.insertion[0, :, 0]) == pytest.approx(0.3125)


def test_the_worst_order_is_the_reverse():
    best = fa.perturbation_curves(np.array([[3, 2, 1, 0]]), 4, (1, 4), zero_fill(TINY), LINEAR)
    worst = fa.perturbation_curves(np.array([[0, 1, 2, 3]]), 4, (1, 4), zero_fill(TINY), LINEAR)
    # deletion: 10, 9, 7, 4, 0 left
    np.testing.assert_allclose(worst.deletion[0, :, 0], [0.5, 0.45, 0.35, 0.2, 0.0])
    assert fa.auc(worst.fractions, worst.deletion[0, :, 0]) > fa.auc(
        best.fractions, best.deletion[0, :, 0]
    )


def test_deletion_insertion_scores_each_map_for_its_class():
    maps = np.stack([TINY, -TINY])  # class 0 credited by 1..4; class 1 by -1..-4
    scores = fa.deletion_insertion(
        maps, [0, 1], zero_fill(TINY), LINEAR, 4, 5, "signed", np.random.default_rng(0)
    )
    assert scores.deletion_auc[0] == pytest.approx(0.1875)
    assert scores.insertion_auc[0] == pytest.approx(0.3125)
    # class 1: its map ranks 1, 2, 3, 4 first (least negative); p1 = 1 − p0 along the worst
    # order for class 0: 1 − (0.5, 0.45, 0.35, 0.2, 0)
    assert scores.deletion_auc[1] == pytest.approx(0.25 * (0.25 + 0.55 + 0.65 + 0.8 + 0.5))
    assert scores.randomised.tolist() == [False, False] and scores.layers == ()
    # both maps order the cells best for their own class: both beat random orders
    assert (scores.deletion_gap > 0).all() and (scores.insertion_gap > 0).all()
    # ranked by magnitude, class 1's map takes its strongest *counter*-evidence first: the
    # worst order for class 1, worse than random
    absolute = fa.deletion_insertion(
        maps, [0, 1], zero_fill(TINY), LINEAR, 4, 5, "absolute", np.random.default_rng(0)
    )
    assert absolute.deletion_auc[1] == pytest.approx(0.25 * (0.25 + 0.7 + 0.85 + 0.95 + 0.5))
    assert absolute.deletion_gap[1] < 0 and absolute.insertion_gap[1] < 0
    assert absolute.deletion_auc[0] == scores.deletion_auc[0]


def test_random_orders_on_a_model_of_the_fraction_kept():
    """Every order gives p = 1 − f (deletion) and p = f (insertion): areas 1/2, gaps 0."""
    image = np.arange(1.0, 13.0).reshape(3, 4, 1)
    maps = np.random.default_rng(1).normal(size=(1, 3, 4, 1))
    scores = fa.deletion_insertion(
        maps, [0], zero_fill(image), FRACTION_KEPT, 6, 4, "signed", np.random.default_rng(2)
    )
    for name in ("deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc"):
        assert getattr(scores, name)[0] == pytest.approx(0.5), name
    assert scores.deletion_gap[0] == pytest.approx(0.0, abs=1e-12)


def test_random_orders_are_permutations_drawn_from_the_generator():
    a = fa.random_orders(50, 3, np.random.default_rng(7))
    b = fa.random_orders(50, 3, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3, 50)
    assert all(sorted(row) == list(range(50)) for row in a)
    assert not np.array_equal(a[0], a[1])


def test_same_seed_same_numbers_other_seed_other_random_baseline(rng):
    image = rng.random((4, 5, 3))
    weights = rng.normal(size=(4, 5, 3))
    model = probability_model(lambda x: 1 / (1 + np.exp(-(x * weights).sum())))
    maps = (image * weights)[None]

    def run(seed: int) -> fa.Faithfulness:
        return fa.deletion_insertion(
            maps, [0], zero_fill(image), model, 5, 3, "signed", np.random.default_rng(seed)
        )

    first, again, other = run(3), run(3), run(4)
    for name in ("deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    np.testing.assert_array_equal(first.deletion_auc, other.deletion_auc)  # no randomness
    assert first.random_deletion_auc[0] != other.random_deletion_auc[0]


def test_concatenate_fills_maps_without_a_cascade_with_nan():
    def part(n, layers=()):
        rows = np.arange(n, dtype=float)
        scores = fa.Faithfulness(
            rows, rows, rows, rows, (), np.empty((n, 0)), np.zeros(n, dtype=bool)
        )
        if layers:
            scores = fa.with_randomisation(scores, layers, np.full((n, len(layers)), 0.5))
        return scores

    joined = fa.concatenate([part(2), part(1, ("fc2", "fc1")), part(1)])
    assert joined.layers == ("fc2", "fc1")
    assert joined.randomised.tolist() == [False, False, True, False]
    np.testing.assert_array_equal(joined.spearman[2], [0.5, 0.5])
    assert np.isnan(joined.spearman[[0, 1, 3]]).all()
    np.testing.assert_array_equal(joined.deletion_auc, [0, 1, 0, 0])


# --------------------------------------------------------------------------------------
# model randomisation
# --------------------------------------------------------------------------------------


def test_rank_correlation_of_a_map_with_itself_and_its_reverse(rng):
    a = rng.random((3, 4, 2))
    assert fa.rank_correlation(a, a) == pytest.approx(1.0)
    assert fa.rank_correlation(a, -a) == pytest.approx(1.0)  # magnitudes
    cells = np.abs(a).sum(axis=-1)
    reverse = np.empty_like(cells.ravel())
    reverse[np.argsort(cells.ravel())] = np.arange(cells.size)[::-1]
    assert fa.rank_correlation(a, reverse.reshape(3, 4, 1)) == pytest.approx(-1.0)
    assert np.isnan(fa.rank_correlation(a, np.ones((3, 4, 2))))


def _small_net(seed: int = 0) -> CNN2D:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return CNN2D(ModelConfig(height=8, width=8)).eval()


def test_cascade_layers_are_named_and_ordered_from_the_output_down():
    layers = fa.cascade_layers(_small_net())
    assert [name for name, _ in layers] == ["fc2", "fc1", "conv3", "conv2", "conv1"]
    conv3 = dict(layers)["conv3"]
    assert [type(m).__name__ for m in conv3] == ["Conv2d", "BatchNorm2d"]


def test_cascade_randomises_the_top_layer_first_and_keeps_the_rest():
    net = _small_net()
    trained = {k: v.clone() for k, v in net.state_dict().items()}
    steps = list(fa.randomisation_cascade(net, torch.Generator().manual_seed(0)))
    assert [name for name, _ in steps] == ["fc2", "fc1", "conv3", "conv2", "conv1"]
    prefixes = {
        "fc2": "classifier.5.",
        "fc1": "classifier.2.",
        "conv3": ("features.8.", "features.9."),
        "conv2": ("features.4.", "features.5."),
        "conv1": ("features.0.", "features.1."),
    }
    randomised: list[str] = []
    for name, model in steps:
        randomised.append(name)
        state = model.state_dict()
        for layer, prefix in prefixes.items():
            keys = [k for k in state if k.startswith(prefix) and "num_batches" not in k]
            assert keys, layer
            same = all(torch.equal(state[k], trained[k]) for k in keys)
            assert same == (layer not in randomised), (name, layer)
    # the network handed in is untouched
    assert all(torch.equal(v, trained[k]) for k, v in net.state_dict().items())
    # batch norms go back to their initial state
    last = steps[-1][1].state_dict()
    assert torch.equal(last["features.1.running_var"], torch.ones(32))
    # default PyTorch bounds: |w| <= 1/sqrt(fan_in)
    assert last["classifier.5.weight"].abs().max() <= 1 / np.sqrt(128)


def test_cascade_is_seeded():
    def weights(seed: int) -> torch.Tensor:
        steps = fa.randomisation_cascade(_small_net(), torch.Generator().manual_seed(seed))
        return next(steps)[1].state_dict()["classifier.5.weight"]

    assert torch.equal(weights(1), weights(1))
    assert not torch.equal(weights(1), weights(2))


# --------------------------------------------------------------------------------------
# the explainers: the masker's fill, integrated gradients, the cascade on maps
# --------------------------------------------------------------------------------------


def _image(rng: np.random.Generator) -> np.ndarray:
    """A smooth-ish (3, 33, 96) image on the k / 255 grid, spanning 0..1."""
    base = rng.random((3, 33, 96))
    smooth = (base + np.roll(base, 1, axis=2) + np.roll(base, 1, axis=1)) / 3
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return (np.floor(smooth * 255) / 255).astype(np.float32)


def test_masker_fill_is_shaps_masker(rng):
    image_u8, _, _ = ex.to_masker_image(_image(rng))
    keep = rng.random((33, 96)) > 0.3
    constant = ex.masker_fill(0.0, image_u8)(keep)
    np.testing.assert_array_equal(constant[keep], image_u8[keep])
    assert (constant[~keep] == 0).all()
    inpaint = ex.masker_fill("inpaint_telea", image_u8)
    np.testing.assert_array_equal(inpaint(np.ones((33, 96), bool)), image_u8)
    # fully hidden: shap's mean colour, truncated to 8 bits
    expected = np.floor(image_u8.reshape(-1, 3).mean(axis=0))
    np.testing.assert_array_equal(inpaint(np.zeros((33, 96), bool))[5, 7], expected)
    filled = inpaint(keep)
    np.testing.assert_array_equal(filled[keep], image_u8[keep])
    assert not np.array_equal(filled[~keep], image_u8[~keep])


def _job(rng, classes=(0, 1), randomise=False) -> ex.ExplainJob:
    return ex.ExplainJob("NRCA.IV.1_EV", _image(rng), tuple(classes), 17, randomise)


QUIET = FaithfulnessConfig(enabled=False)


def test_integrated_gradients_complete_from_the_partition_base(rng):
    ckpt, job = make_checkpoint(), _job(rng)
    cfg = ShapConfig(explainer="integrated_gradients", workers=1, faithfulness=QUIET)
    result = ex.TraceExplainer(ckpt, cfg, torch.device("cpu")).explain(job)
    assert result.values.shape == (2, 33, 96, 3) and result.values.dtype == np.float32
    delta = result.logits[list(job.classes)] - result.base_values
    error = np.abs(result.values.astype(np.float64).sum(axis=(1, 2, 3)) - delta)
    assert np.abs(delta).min() > 0.05  # not a trivial check
    np.testing.assert_array_less(error, 0.02 * np.abs(delta) + 1e-4)
    # the baseline is the image the partition explainer calls fully masked: same base value
    partition = dataclasses.replace(cfg, explainer="partition", max_evals=8)
    base = ex.TraceExplainer(ckpt, partition, torch.device("cpu")).explain(job).base_values
    np.testing.assert_allclose(result.base_values, base, atol=1e-4)


def test_explainer_scores_faithfulness_without_changing_the_maps(rng):
    ckpt, job = make_checkpoint(), _job(rng, randomise=True)
    fc = FaithfulnessConfig(n_steps=5, random_orders=2, randomisation_max_evals=20)
    cfg = ShapConfig(max_evals=40, batch_size=40, workers=1, faithfulness=fc)
    cpu = torch.device("cpu")
    with ex.single_threaded():
        plain = ex.TraceExplainer(ckpt, dataclasses.replace(cfg, faithfulness=QUIET), cpu)
        bare = plain.explain(job)
        result = ex.TraceExplainer(ckpt, cfg, cpu).explain(job)
        again = ex.TraceExplainer(ckpt, cfg, cpu).explain(job)
    assert bare.faithfulness is None
    np.testing.assert_array_equal(result.values, bare.values)
    scores = result.faithfulness
    assert scores is not None and scores.layers == ("fc2", "fc1", "conv3", "conv2", "conv1")
    assert scores.spearman.shape == (2, 5) and scores.randomised.all()
    assert np.isfinite(scores.deletion_auc).all() and (scores.deletion_auc >= 0).all()
    assert (scores.insertion_auc <= 1).all()
    for name in ("deletion_auc", "insertion_auc", "random_deletion_auc", "spearman"):
        np.testing.assert_array_equal(getattr(scores, name), getattr(again.faithfulness, name))


def test_faithfulness_parameters_fail_with_their_names():
    with pytest.raises(ConfigError, match=r"shap\.faithfulness\.n_steps"):
        FaithfulnessConfig(n_steps=0)
    with pytest.raises(ConfigError, match=r"shap\.faithfulness\.random_orders"):
        FaithfulnessConfig(random_orders=0)
    with pytest.raises(ConfigError, match=r"shap\.faithfulness\.randomisation_per_class"):
        FaithfulnessConfig(randomisation_per_class=-1)
    with pytest.raises(ExplainError, match=r"shap\.faithfulness\.n_steps: 4000"):
        ex.check_config(ShapConfig(faithfulness=FaithfulnessConfig(n_steps=4000)))
    with pytest.raises(ExplainError, match=r"shap\.faithfulness\.randomisation_max_evals"):
        ex.check_config(ShapConfig(faithfulness=FaithfulnessConfig(randomisation_max_evals=3)))
    # capped at shap.max_evals; no check when the cascade is off
    assert cascade_max_evals(ShapConfig(max_evals=100)) == 100
    ex.check_config(
        ShapConfig(
            faithfulness=FaithfulnessConfig(randomisation_per_class=0, randomisation_max_evals=3)
        )
    )
