"""Write a randomly initialised model folder in the exact format nnInteractive 2.6 loads.

No model weights can be downloaded in CI, yet every backend must run the real nnInteractive
inference code. This writes ``plans.json``, ``dataset.json``, ``inference_info.json``, ``LICENSE``
and ``fold_0/checkpoint_final.pth`` for a 3D U-Net of one of two sizes:

* ``tiny``: 4 stages, 4-32 features, 64^3 patch (about 81k parameters, 0.4 MB) for tests on CPU.
  nnInteractive's refinement needs a patch larger than 48 voxels per axis.
* ``large``: ResEnc-L-like, 6 stages, 32-320 features, 192^3 patch (about 100M parameters,
  0.4 GB) for realistic timings on a GPU. Generated on demand, never committed.

Two variants of the weights:

* ``random``: seeded random weights. Predictions are sparse, stay inside one patch and never zoom out.
* ``rule``: a plain U-Net without normalisation layers, its weights set by hand to compute one rule
  per voxel: foreground where the image is more than ``BRIGHT_Z`` standard deviations above its mean
  or a positive prompt marks it; never where a negative prompt marks it. A bright object that crosses
  a patch's border then makes AutoZoom escalate and refinement run, as real models do on most prompts,
  and tests know the answer: the bright voxels. Random weights give neither.

Run ``nninteractive-slicer-make-model OUT_DIR [--size tiny|large] [--variant random|rule]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# nnInteractive's default channel layout: prev_seg + (positive, negative) for bbox/lasso, points, scribble.
INTERACTION_CHANNELS = 7
IMAGE_CHANNELS = 1
CONFIGURATION = "3d_fullres"
TRAINER = "nnInteractiveTrainer_stub"
# Added to the background logit of the output layer. With plain random weights about 60% of a patch
# comes out foreground, every prediction touches the patch border and AutoZoom escalates to 4x
# (5-60 s per prompt on CPU). Shifted, the prediction is sparse and follows bright structures:
# measured at 64^3, about 0.3 s per prompt and no zoom-out.
BACKGROUND_LOGIT_SHIFT = 2.0
# The ``rule`` variant: how bright a voxel must be (in standard deviations of the normalised image) to be
# foreground, and how much a negative prompt outweighs everything else.
BRIGHT_Z = 3.0
NEGATIVE_WEIGHT = 1000.0
# Network input channels: the image, then nnInteractive's interactions (prev_seg, then positive/negative
# pairs for bbox and lasso, points, scribbles). The rule ignores prev_seg: in refinement it holds the coarse,
# zoomed-out prediction, whose blurred edges the rule must not keep.
POSITIVE_CHANNELS = [2, 4, 6]
NEGATIVE_CHANNELS = [3, 5, 7]
VARIANTS = ("random", "rule")
LICENSE_TEXT = "Apache-2.0 (synthetic test model, random weights)\nNot for clinical or research use.\n"

SIZES = {
    "tiny": {"features": [4, 8, 16, 32], "blocks": [1, 1, 1, 1], "patch": [64, 64, 64]},
    "large": {"features": [32, 64, 128, 256, 320, 320], "blocks": [1, 3, 4, 6, 6, 6], "patch": [192, 192, 192]},
}


def architecture(size: str) -> dict:
    """The plans' ``architecture`` entry for a 3D ResidualEncoderUNet of the given size."""
    spec = SIZES[size]
    n_stages = len(spec["features"])
    return {
        "network_class_name": "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet",
        "arch_kwargs": {
            "n_stages": n_stages,
            "features_per_stage": spec["features"],
            "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": [[3, 3, 3]] * n_stages,
            "strides": [[1, 1, 1]] + [[2, 2, 2]] * (n_stages - 1),
            "n_blocks_per_stage": spec["blocks"],
            "n_conv_per_stage_decoder": [1] * (n_stages - 1),
            "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


def plans(size: str, variant: str = "random") -> dict:
    patch = SIZES[size]["patch"]
    network = architecture(size)
    if variant == "rule":
        # Per-voxel arithmetic: a normalisation layer would rescale it by each patch's statistics. The residual
        # U-Net initialises its norms' weights, so a plain one (same stages) carries the rule.
        network["network_class_name"] = "dynamic_network_architectures.architectures.unet.PlainConvUNet"
        kwargs = network["arch_kwargs"]
        kwargs["n_conv_per_stage"] = kwargs.pop("n_blocks_per_stage")
        kwargs["norm_op"] = "torch.nn.Identity"
    return {
        "dataset_name": f"Dataset999_SyntheticNNInteractive{size.capitalize()}",
        "plans_name": "nnUNetResEncUNetPlans",
        "original_median_spacing_after_transp": [1.0, 1.0, 1.0],
        "original_median_shape_after_transp": patch,
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {
            CONFIGURATION: {
                "data_identifier": "nnUNetPlans_3d_fullres",
                "preprocessor_name": "DefaultPreprocessor",
                "batch_size": 2,
                "patch_size": patch,
                "median_image_size_in_voxels": patch,
                "spacing": [1.0, 1.0, 1.0],
                "normalization_schemes": ["ZScoreNormalization"],
                "use_mask_for_norm": [False],
                "resampling_fn_data": "resample_data_or_seg_to_shape",
                "resampling_fn_seg": "resample_data_or_seg_to_shape",
                "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
                "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
                "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
                "resampling_fn_probabilities_kwargs": {
                    "is_seg": False,
                    "order": 1,
                    "order_z": 0,
                    "force_separate_z": None,
                },
                "architecture": network,
                "batch_dice": False,
            }
        },
        "experiment_planner_used": "nnUNetPlannerResEncL",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            "0": {"max": 1.0, "mean": 0.0, "median": 0.0, "min": -1.0, "percentile_00_5": -1.0,
                  "percentile_99_5": 1.0, "std": 1.0}
        },
    }


def write_model(out_dir: str | Path, size: str = "tiny", seed: int = 0, variant: str = "random") -> Path:
    """Write the model folder and return its path. Same ``size``, ``seed`` and ``variant`` give the same weights."""
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {list(VARIANTS)}, got {variant!r}")
    out = Path(out_dir)
    (out / "fold_0").mkdir(parents=True, exist_ok=True)
    the_plans = plans(size, variant)
    arch = the_plans["configurations"][CONFIGURATION]["architecture"]
    torch.manual_seed(seed)
    network = get_network_from_plans(
        arch["network_class_name"],
        arch["arch_kwargs"],
        arch["_kw_requires_import"],
        IMAGE_CHANNELS + INTERACTION_CHANNELS,
        2,
        allow_init=True,
        deep_supervision=False,
    )
    if variant == "rule":
        _set_rule_weights(network)
    weights = network.state_dict()
    if variant == "random":
        output_bias = sorted(k for k in weights if k.startswith("decoder.seg_layers.") and k.endswith(".bias"))[-1]
        weights[output_bias][0] += BACKGROUND_LOGIT_SHIFT
    checkpoint = {
        "network_weights": weights,
        "trainer_name": TRAINER,
        "init_args": {"configuration": CONFIGURATION},
    }
    torch.save(checkpoint, out / "fold_0" / "checkpoint_final.pth")
    _write_json(out / "plans.json", the_plans)
    _write_json(out / "dataset.json", {"channel_names": {"0": "image"}, "labels": {"background": 0, "object": 1},
                                      "numTraining": 0, "file_ending": ".nii.gz"})
    _write_json(out / "inference_info.json", {})
    (out / "LICENSE").write_text(LICENSE_TEXT, encoding="utf-8")
    return out


def _set_rule_weights(network) -> None:
    """Zero every weight, then wire the rule through the full-resolution path only (centre taps, no mixing).

    The first encoder stage computes image / BRIGHT_Z, positive prompts and negative prompts; the last
    decoder stage reads only that stage's skip and adds them up, weighted; the output layer calls a voxel
    foreground where the sum exceeds 1.
    """
    import torch

    centre = (1, 1, 1)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.zero_()
        first = network.encoder.stages[0][0].convs[0].conv.weight
        first[(0, 0, *centre)] = 1.0 / BRIGHT_Z
        for channel in POSITIVE_CHANNELS:
            first[(1, channel, *centre)] = 1.0
        for channel in NEGATIVE_CHANNELS:
            first[(2, channel, *centre)] = 1.0
        last = network.decoder.stages[-1].convs[0].conv.weight
        skip = last.shape[1] // 2  # input: the upsampled deeper features, then the first stage's skip
        for feature, weight in ((0, 1.0), (1, 2.0), (2, -NEGATIVE_WEIGHT)):
            last[(0, skip + feature, *centre)] = weight
        output = network.decoder.seg_layers[-1]
        output.weight[1, 0] = 1.0
        output.bias[0] = 1.0


def _write_json(path: Path, content: dict) -> None:
    path.write_text(json.dumps(content, indent=2), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", help="folder to write the model into")
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variant", choices=VARIANTS, default="random")
    args = parser.parse_args(argv)
    path = write_model(args.out_dir, args.size, args.seed, args.variant)
    print(f"Wrote a {args.size} {args.variant} synthetic nnInteractive model to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
