"""The study's Lightning checkpoints → quakeshap checkpoints (``docs/method.md`` §3, §8).

The study's repository releases ``training/model_checkpoints.zip`` with two PyTorch
Lightning ``ModelCheckpoint`` files: ``best_model_fold_2.ckpt`` (the model) and
``best_model_c_fold_2.ckpt`` (the co-located control). Each is a dict whose
``state_dict`` holds the CNN2D's weights under the study's layer names (``conv1..3``,
``BatchNorm1..3``, ``fc1``, ``fc2``), with or without Lightning's ``model.`` prefix, beside
Lightning's own bookkeeping (``epoch``, ``global_step``, ``callbacks``,
``optimizer_states``, ...). Neither the normalisation nor the class names are in the file.

:func:`convert` maps the weights onto :class:`quakeshap.model.CNN2D` layer by layer (the
n-th convolution, batch norm and linear layer of the study's network onto the n-th of
quakeshap's), checks every shape, adds the study's normalisation and classes, and returns a
checkpoint in :mod:`quakeshap.artifacts.checkpoint`'s format. The file is read with
``torch.load(weights_only=True)``: a pickle that asks for anything but tensors and plain
containers is refused before any of it runs.

Run as ``python -m quakeshap.interop.study_checkpoint IN OUT`` (``docs/study-release.md``).
"""

from __future__ import annotations

import argparse
import io
import logging
import pickle
import re
import sys
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from quakeshap.artifacts import checkpoint
from quakeshap.interop.study_release import Release, StudyReleaseError, run_command
from quakeshap.model import CNN2D, ModelConfig
from quakeshap.record import CLASS_NAMES

log = logging.getLogger(__name__)

#: the study's input normalisation (not stored in its checkpoints), ``docs/method.md`` §8
STUDY_MEAN: tuple[float, float, float] = (0.6814, 0.6671, 0.6494)
STUDY_STD: tuple[float, float, float] = (0.1327, 0.1345, 0.1330)
#: the study's layer names by kind, in forward order: the n-th of each kind is the n-th
#: layer of that kind in :class:`~quakeshap.model.CNN2D`
STUDY_LAYERS: dict[type[nn.Module], tuple[str, ...]] = {
    nn.Conv2d: ("conv1", "conv2", "conv3"),
    nn.BatchNorm2d: ("BatchNorm1", "BatchNorm2", "BatchNorm3"),
    nn.Linear: ("fc1", "fc2"),
}
#: the prefix a LightningModule that holds the network as ``self.model`` puts on every key
LIGHTNING_PREFIX = "model."
#: the released checkpoints' file extension
CKPT_SUFFIX = ".ckpt"
#: Lightning's bookkeeping copied into the converted checkpoint's ``study_checkpoint``
PROVENANCE_KEYS = ("epoch", "global_step", "pytorch-lightning_version")


def key_map(model: CNN2D) -> dict[str, str]:
    """Every study ``state_dict`` key → the same tensor's key in ``model``.

    ``conv2.weight`` → ``features.4.weight``: the n-th :class:`~torch.nn.Conv2d`,
    :class:`~torch.nn.BatchNorm2d` and :class:`~torch.nn.Linear` of the model take the
    study's n-th of each, with every parameter and buffer they hold (``weight``, ``bias``,
    ``running_mean``, ``running_var``, ``num_batches_tracked``).
    """
    mapping: dict[str, str] = {}
    for kind, study_names in STUDY_LAYERS.items():
        ours = [name for name, module in model.named_modules() if type(module) is kind]
        if len(ours) != len(study_names):  # a change of CNN2D, not of the input
            raise RuntimeError(
                f"CNN2D has {len(ours)} {kind.__name__} layers, the study's network "
                f"{len(study_names)}: update STUDY_LAYERS"
            )
        for study, own in zip(study_names, ours, strict=True):
            for suffix in model.get_submodule(own).state_dict():
                mapping[f"{study}.{suffix}"] = f"{own}.{suffix}"
    return mapping


def read_study_checkpoint(path: str | Path, member: str | None = None) -> tuple[dict, str]:
    """Load a study checkpoint, weights only: nothing in the file can run.

    Parameters
    ----------
    path
        A ``.ckpt`` file, or the release's ``model_checkpoints.zip`` (then ``member``).
    member
        The checkpoint's file name inside the archive (``best_model_fold_2.ckpt``); None
        for a ``.ckpt`` file, or an archive that holds a single one.

    Returns
    -------
    The checkpoint dict, and how messages name it (``archive.zip:member`` or the path).
    """
    path = Path(path)
    data, where = _checkpoint_bytes(path, member)
    try:
        ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if refused:
            raise StudyReleaseError(
                f"{where}: refused to load it: the pickle asks for {refused.group(1)}, more "
                "than tensors and plain containers; only weights are read, no code runs"
            ) from None
        detail = str(exc).rpartition("WeightsUnpickler error:")[2].strip().split("\n")[0]
        raise StudyReleaseError(
            f"{where}: not a readable PyTorch checkpoint ({detail or type(exc).__name__})"
        ) from None
    except Exception as exc:  # torch raises several types for a damaged file
        raise StudyReleaseError(
            f"{where}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        held = sorted(map(str, ckpt))[:10] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise StudyReleaseError(
            f"{where}: not a Lightning checkpoint: expected a dict with a 'state_dict', "
            f"found {held}"
        )
    return ckpt, where


def _checkpoint_bytes(path: Path, member: str | None) -> tuple[bytes, str]:
    """The checkpoint's bytes: the file itself, or an entry of the release's archive.

    A ``torch.save`` file is itself a zip archive; an archive of checkpoints is told apart
    by the ``.ckpt`` files it holds.
    """
    if member is None and path.is_file() and not _holds_checkpoints(path):
        return path.read_bytes(), str(path)
    with Release(path) as release:
        found = release.find(PurePosixPath(member).name) if member else _ckpt_entries(release)
        if len(found) != 1:
            listed = _ckpt_entries(release)
            what = f"no entry {member!r}" if member else f"{len(listed)} checkpoints"
            raise StudyReleaseError(
                f"{path}: {what} in the archive; name one with --member (it holds "
                f"{[PurePosixPath(n).name for n in listed]})"
            )
        return release.read(found[0]), release.where(found[0])


def _ckpt_entries(release: Release) -> list[str]:
    return [n for n in release.names if n.endswith(CKPT_SUFFIX)]


def _holds_checkpoints(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith(CKPT_SUFFIX) for n in archive.namelist())


def study_state_dict(ckpt: dict[str, Any], where: str) -> dict[str, Any]:
    """The checkpoint's ``state_dict`` under the study's own layer names.

    Keys come either bare (``conv1.weight``) or, when the LightningModule held the network
    as ``self.model``, all with the prefix ``model.``; a mix of the two is refused.
    """
    state = ckpt["state_dict"]
    prefixed = [k for k in state if str(k).startswith(LIGHTNING_PREFIX)]
    if not prefixed:
        return dict(state)
    if len(prefixed) != len(state):
        bare = [k for k in state if not str(k).startswith(LIGHTNING_PREFIX)]
        raise StudyReleaseError(
            f"{where}: state_dict mixes keys with and without the {LIGHTNING_PREFIX!r} prefix "
            f"(e.g. {prefixed[0]!r} and {bare[0]!r}); expected one network"
        )
    return {str(k).removeprefix(LIGHTNING_PREFIX): v for k, v in state.items()}


def convert(
    ckpt: dict[str, Any],
    where: str,
    traces: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A quakeshap checkpoint (:mod:`quakeshap.artifacts.checkpoint`) from a study's one.

    Parameters
    ----------
    ckpt
        As read by :func:`read_study_checkpoint`.
    where
        How messages name the file.
    traces
        ``train_traces``, ``test_traces``, ``exclude_colocated`` (:func:`split_traces`), recorded
        so that ``evaluate`` tests on the set the study held out; None = not recorded
        (``evaluate`` then uses the spectrogram set's ``split == "test"``).

    Raises
    ------
    StudyReleaseError
        Naming every key that is unexpected, missing, misshapen or not finite.
    """
    model = CNN2D(ModelConfig())
    expected = model.state_dict()
    mapping = key_map(model)
    state = study_state_dict(ckpt, where)
    unexpected = [k for k in state if k not in mapping]
    missing = [k for k in mapping if k not in state]
    bad = []
    for key, value in state.items():
        if key not in mapping:
            continue
        want = expected[mapping[key]]
        if not isinstance(value, torch.Tensor):
            bad.append(f"{key} is a {type(value).__name__}, not a tensor")
        elif tuple(value.shape) != tuple(want.shape):
            bad.append(f"{key} {tuple(value.shape)}, expected {tuple(want.shape)}")
        elif want.is_floating_point() != value.is_floating_point():
            bad.append(f"{key} of dtype {value.dtype}, expected {want.dtype}")
        elif value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad.append(f"{key} holds NaN or inf")
    problems = [
        f"{label} {items}"
        for label, items in (
            ("unexpected key(s)", unexpected),
            ("missing key(s)", missing),
            ("misshapen key(s)", bad),
        )
        if items
    ]
    if problems:
        raise StudyReleaseError(
            f"{where}: not the study's CNN2D: " + "; ".join(problems) + " (the study's "
            "keys are conv1..3.*, BatchNorm1..3.*, fc1.* with weight 128 × 24576, fc2.*)"
        )
    model.load_state_dict(
        {mapping[k]: v.to(expected[mapping[k]].dtype) for k, v in state.items()}, strict=True
    )
    provenance = {k: ckpt[k] for k in PROVENANCE_KEYS if _is_plain(ckpt.get(k))}
    extra: dict[str, Any] = {"study_checkpoint": {"file": where, **provenance}}
    if traces is not None:
        extra.update(traces)
    return checkpoint.make(
        model.eval(), list(CLASS_NAMES), list(STUDY_MEAN), list(STUDY_STD), extra
    )


def _is_plain(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def split_traces(metadata: pd.DataFrame, exclude_colocated: bool = False) -> dict[str, Any]:
    """The train and test traces of a study model, from a metadata table.

    ``metadata`` needs ``trace_name`` and ``split`` (the study's ``metadata.csv``, or
    ``data/spectrograms/metadata.csv`` of a set read from it), and ``associato`` for the
    co-located control, which was trained without any co-located trace and tested on the
    test split together with all of them (``docs/method.md`` §3).
    """
    needed = ["trace_name", "split", *(["associato"] if exclude_colocated else [])]
    absent = [c for c in needed if c not in metadata.columns]
    if absent:
        raise StudyReleaseError(f"the metadata table lacks column(s) {absent}")
    names = metadata["trace_name"].astype(str).to_numpy()
    test = (metadata["split"] == "test").to_numpy()
    if exclude_colocated:
        colocated = pd.to_numeric(metadata["associato"], errors="coerce").fillna(0).to_numpy() != 0
        test = test | colocated
        train = (metadata["split"] == "train").to_numpy() & ~colocated
    else:
        train = (metadata["split"] == "train").to_numpy()
    return {
        "train_traces": names[train].tolist(),
        "test_traces": names[test].tolist(),
        "exclude_colocated": exclude_colocated,
    }


def _read_metadata(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype={"trace_name": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise StudyReleaseError(f"{path}: not a readable metadata table ({exc})") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a .ckpt file or model_checkpoints.zip")
    parser.add_argument("out", type=Path, help="the quakeshap checkpoint to write (.pt)")
    parser.add_argument("--member", help="the checkpoint's name inside the archive")
    parser.add_argument(
        "--metadata",
        type=Path,
        help="metadata.csv with trace_name and split: record the train and test traces",
    )
    parser.add_argument(
        "--exclude-colocated",
        action="store_true",
        help="the co-located control (best_model_c_fold_2.ckpt): co-located traces are test",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def work() -> None:
        ckpt, where = read_study_checkpoint(args.checkpoint, args.member)
        traces = None
        if args.exclude_colocated and args.metadata is None:
            raise StudyReleaseError(
                "--exclude-colocated needs --metadata: the co-located traces are read from it"
            )
        if args.metadata is not None:
            traces = split_traces(_read_metadata(args.metadata), args.exclude_colocated)
        converted = convert(ckpt, where, traces)
        checkpoint.save(converted, args.out)
        n = int(np.sum([t.numel() for t in converted["state_dict"].values()]))
        log.info("%s → %s (%d values; epoch %s)", where, args.out, n, ckpt.get("epoch"))

    return run_command(__name__, work)


if __name__ == "__main__":
    sys.exit(main())
