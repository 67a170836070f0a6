"""Start a backbone from a Keras ImageNet weights file on disk (``train.backbone_weights``).

Nothing is downloaded here, but a user who has Keras' published VGG-16, VGG-19 or
InceptionV3 ``.h5`` files can start a backbone from them (``load_backbone_weights``:
every shape checked, nothing written unless all layers check out). Which methods, what
is loaded where, and the papers that start from ImageNet: docs/backbone_weights.md.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import h5py
import numpy as np
from absl import logging

from coopseg.config import ConfigError, backbone_of
from coopseg.config.methods import INCEPTIONV3_BACKBONE, VGG16_BACKBONE, VGG19_BACKBONE
from coopseg.models.transfer import iter_leaf_layers  # imports TensorFlow

# The input scale each family's ImageNet weights were trained on (models/input_adapter.py).
ADAPTER_OF_BACKBONE: Dict[str, str] = {VGG16_BACKBONE: "caffe", VGG19_BACKBONE: "caffe",
                                       INCEPTIONV3_BACKBONE: "inception"}
BACKBONE_TITLES: Dict[str, str] = {VGG16_BACKBONE: "VGG-16", VGG19_BACKBONE: "VGG-19",
                                   INCEPTIONV3_BACKBONE: "InceptionV3"}
# Convolutions per block (Simonyan & Zisserman, configurations D and E).
VGG_BLOCK_CONVS: Dict[str, Tuple[int, ...]] = {VGG16_BACKBONE: (2, 2, 3, 3, 3),
                                               VGG19_BACKBONE: (2, 2, 4, 4, 4)}
# Keras' VGG top (include_top=True) -> our layers, in order: fc2 only makes sense on fc1.
VGG_FC_MAP: Tuple[Tuple[str, str], ...] = (("fc1", "fc6"), ("fc2", "fc7"))
IMAGENET_TOP = "predictions"  # the 1000-class layer: never loaded
_VGG_CONV = re.compile(r"block\d+_conv\d+$")
_INCEPTION_PREFIXES = ("conv2d", "batch_normalization")


@dataclass
class LoadReport:
    """What ``load_backbone_weights`` did: tensors written, file layers left out and why."""

    path: str
    tensors: int = 0
    layers: int = 0
    skipped: List[Tuple[str, str]] = field(default_factory=list)  # (file layer, reason)


# ----------------------------------------------------------------------------- config
def input_adapter_kind(config) -> str:
    """The input adapter the models of ``config`` need: "" without backbone_weights.

    Models of a run with ``backbone_weights`` start with ``input_adapter.InputAdapter``
    (the pixel scale the weights expect). A DecoupledNet stage 2 restores its stage-1
    classifier instead of reading the file; there the setting only declares that adapter.
    """
    if not config.train.backbone_weights:
        return ""
    return ADAPTER_OF_BACKBONE[backbone_of(config.method)]


# ----------------------------------------------------------------------------- file
@dataclass
class _FileLayer:
    name: str
    weights: List[h5py.Dataset]  # in the layer's weight order

    @property
    def shapes(self) -> List[Tuple[int, ...]]:
        return [tuple(w.shape) for w in self.weights]


def _name_list(group: h5py.Group, name: str) -> Optional[List[str]]:
    """A Keras name-list attribute (``layer_names``, ``weight_names``), also in the chunked
    form Keras uses for long lists (``name0``, ``name1``, ...); None when absent."""
    if name in group.attrs:
        values = list(group.attrs[name])
    elif f"{name}0" in group.attrs:
        values, chunk = [], 0
        while f"{name}{chunk}" in group.attrs:
            values.extend(group.attrs[f"{name}{chunk}"])
            chunk += 1
    else:
        return None
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _read_layers(f: h5py.File, path: str) -> List[_FileLayer]:
    """The layers of a Keras weights file that have weights, in file (topological) order.

    Keras' HDF5 layout: ``model.save_weights("x.h5")`` (root attribute ``layer_names``,
    per layer group attribute ``weight_names``) or a full-model ``model.save("x.h5")``
    (the same under ``model_weights``). Within a layer, weights are matched by position,
    as Keras' own ``load_weights`` does: the published VGG files name them in Keras 1
    style (``block1_conv1_W_1:0``), later files ``block1_conv1/kernel:0``.
    """
    root = f["model_weights"] if "model_weights" in f else f
    names = _name_list(root, "layer_names")
    if names is None:
        raise ConfigError(f"{path}: not a Keras weights file (HDF5 without a 'layer_names' "
                          "attribute; expected model.save_weights('x.h5') or model.save('x.h5'))")
    out = []
    for name in names:
        if name not in root:
            raise ConfigError(f"{path}: layer {name!r} is listed but has no group; damaged file?")
        group = root[name]
        weight_names = _name_list(group, "weight_names") or []
        try:
            weights = [group[w] for w in weight_names]
        except KeyError as err:
            raise ConfigError(f"{path}: layer {name!r} lacks a listed weight ({err})") from err
        if weights:
            out.append(_FileLayer(name, weights))
    return out


# ----------------------------------------------------------------------------- model
def _model_layers(model) -> List:
    """Leaf layers of ``model`` in Keras' (topological) order, descending into sub-models."""
    return list(iter_leaf_layers(model))


@dataclass
class _Assignment:
    variable: object  # a tf.Variable
    source: h5py.Dataset
    reshape: Optional[Tuple[int, ...]] = None

    def read(self) -> np.ndarray:
        value = np.asarray(self.source[()])
        if self.reshape is not None:
            value = value.reshape(self.reshape)
        return value.astype(self.variable.dtype.as_numpy_dtype, copy=False)


def _shape_problem(layer_name: str, what: str, model_shapes: Sequence, file_shapes: Sequence,
                   file_layer: str = "") -> Optional[str]:
    if list(map(tuple, model_shapes)) == list(map(tuple, file_shapes)):
        return None
    src = f" (file layer {file_layer})" if file_layer and file_layer != layer_name else ""
    return (f"{layer_name}{src}: the model's {what} shapes are {list(map(tuple, model_shapes))}, "
            f"the file's {list(map(tuple, file_shapes))}")


def _vgg_plan(model, layers: List[_FileLayer], backbone: str, path: str,
              report: LoadReport) -> List[_Assignment]:
    """VGG-16 (fcn8s, vgg16, decouplednet's classifier, deconvnet) and VGG-19 (vgg19).

    The convolutions load by name (``block{b}_conv{i}``, kernel + bias). The file must
    hold exactly that network's convolutions (a VGG-19 file has ``block3_conv4``, which
    VGG-16 has not). The published VGGs have no BatchNorm, so a BN trunk
    (``model.vgg_batch_norm=true``) is refused with a hint; a ``block{b}_conv{i}_bn`` in
    file and model (coopseg's own BN trunk saved to .h5) loads with its convolution.
    Then the top (``_vgg_fc_plan``); ``predictions`` (the 1000 ImageNet classes) never loads.
    """
    title = BACKBONE_TITLES[backbone]
    expected = [f"block{b}_conv{i}" for b, n in enumerate(VGG_BLOCK_CONVS[backbone], start=1)
                for i in range(1, n + 1)]
    by_name = {layer.name: layer for layer in layers}
    in_file = [layer.name for layer in layers if _VGG_CONV.match(layer.name)]
    if not in_file:
        raise ConfigError(
            f"{path} has no {title} layer ({expected[0]} ... {expected[-1]}); its layers with "
            f"weights are {[layer.name for layer in layers][:6]}...: a file of another network?")
    extra = [n for n in in_file if n not in expected]
    missing = [n for n in expected if n not in by_name]
    if extra or missing:
        raise ConfigError(
            f"{path} is not a {title} file: "
            + (f"it has {extra}, which {title} has not" if extra else "")
            + ("; " if extra and missing else "")
            + (f"it lacks {missing}" if missing else ""))
    model_layers = {layer.name: layer for layer in _model_layers(model)}
    plan: List[_Assignment] = []
    problems: List[str] = []
    for name in expected:
        source, target = by_name[name], model_layers.get(name)
        if target is None:
            problems.append(f"{name}: no layer of that name in model {model.name!r}")
            continue
        if len(target.weights) == 1 and len(source.weights) == 2 and f"{name}_bn" in model_layers:
            raise ConfigError(
                f"{path} holds the published {title} (convolution + bias, no BatchNorm), but "
                f"this model's VGG trunk has BatchNorm after every convolution "
                f"(model.vgg_batch_norm=true); build it as the published net with "
                f"--set=model.vgg_batch_norm=false")
        bn = f"{name}_bn"  # BatchNorm after the conv: coopseg's own BN trunks saved to .h5
        if (bn in by_name) != (bn in model_layers):
            problems.append(f"{name}: BatchNorm after it in the "
                            f"{'file' if bn in by_name else 'model'} only (model.vgg_batch_norm)")
            continue
        pairs = [(target, source)] + ([(model_layers[bn], by_name[bn])] if bn in by_name else [])
        for dst, src in pairs:
            problem = _shape_problem(dst.name, "weight", [w.shape for w in dst.weights],
                                     src.shapes)
            if problem:
                problems.append(problem)
            else:
                plan.extend(_Assignment(v, d) for v, d in zip(dst.weights, src.weights))
    if problems:
        raise ConfigError(
            f"{path} does not fit the model's {title} trunk ({len(problems)} of {len(expected)} "
            "convolutions; a width multiplier other than 1 -- model.vgg_width_multiplier, "
            "decoupled.width_multiplier -- changes these shapes):\n  " + "\n  ".join(problems))
    report.layers += len(expected)
    plan.extend(_vgg_fc_plan(model_layers, by_name, report))
    if IMAGENET_TOP in by_name:
        report.skipped.append((IMAGENET_TOP, "the 1000 ImageNet classes are never loaded"))
    return plan


def _vgg_fc_plan(model_layers: Dict, by_name: Dict[str, _FileLayer],
                 report: LoadReport) -> List[_Assignment]:
    """fc1 -> fc6, fc2 -> fc7 where they fit (Dense as is, Conv2D reshaped); else skipped.

    Reshaped to a 7x7 and a 1x1 convolution for FCN-8s / DeconvNet (the FCN conversion,
    Long et al., arXiv:1411.4038, Sec. 3.1), as they are for DecoupledNet's Dense
    fc6/fc7 (only at 224 px, where pool5 flattens to 25088). An fc layer that does not
    fit is skipped with one logged line.
    """
    plan: List[_Assignment] = []
    previous_loaded = True
    for src_name, dst_name in VGG_FC_MAP:
        source = by_name.get(src_name)
        if source is None:
            continue  # a notop file
        target = model_layers.get(dst_name)
        assignment: List[_Assignment] = []
        if not previous_loaded:
            reason = f"{src_name} was trained on the output of the fc layer that was not loaded"
        elif target is None:
            reason = f"the model has no {dst_name} layer"
        else:
            reason, assignment = _fc_fit(source, target)
        if reason:
            report.skipped.append((src_name, f"not loaded into {dst_name}: {reason}"))
            previous_loaded = False
            continue
        plan.extend(assignment)
        report.layers += 1
    return plan


def _fc_fit(source: _FileLayer, target) -> Tuple[Optional[str], List[_Assignment]]:
    """(None, assignments) when a Dense (N, F) + bias (F,) fits ``target``, else (reason, [])."""
    weights = list(target.weights)
    if len(source.weights) != 2 or len(source.weights[0].shape) != 2:
        return f"{source.name} is not a dense layer (shapes {source.shapes})", []
    if len(weights) != 2:
        return (f"the model's {target.name} has weights {[tuple(w.shape) for w in weights]} "
                "(no bias: BatchNorm after it?)"), []
    n_in, units = source.weights[0].shape
    kernel_shape = tuple(weights[0].shape)
    fits = (kernel_shape[-1] == units and int(np.prod(kernel_shape[:-1])) == n_in
            and tuple(weights[1].shape) == (units,))
    if not fits:
        return (f"its kernel {(n_in, units)} does not fit the model's {kernel_shape} (the "
                "published fc6 sees a 7x7x512 pool5, i.e. 224 px input at width 1, and has "
                "4096 units)"), []
    # Keras flattens channels-last maps row-major over (h, w, c), so a Dense kernel on the
    # flattened pool5 is a (h, w, c, units) convolution kernel after a plain reshape.
    reshape = kernel_shape if len(kernel_shape) != 2 else None
    return None, [_Assignment(weights[0], source.weights[0], reshape),
                  _Assignment(weights[1], source.weights[1])]


def _inception_plan(model, layers: List[_FileLayer], path: str,
                    report: LoadReport) -> List[_Assignment]:
    """InceptionV3 (inceptionv3): keras.applications' layer names are generated
    (``conv2d_N``, ``batch_normalization_N``, N depending on how many layers the process
    made before), so the layers with weights are paired in topological order (Keras'
    ``model.layers`` order, which ``save_weights`` writes), skipping our head (Dense)."""
    source = [layer for layer in layers if layer.name != IMAGENET_TOP]
    if not any(layer.name.startswith(_INCEPTION_PREFIXES) for layer in source):
        raise ConfigError(
            f"{path} has no InceptionV3 layer (conv2d_N / batch_normalization_N); its layers "
            f"with weights are {[layer.name for layer in layers][:6]}...: a file of another "
            "network?")
    # Our head is GAP + Dense; InceptionV3's trunk has no Dense layer.
    targets = [layer for layer in _model_layers(model)
               if layer.weights and type(layer).__name__ != "Dense"]
    if len(source) != len(targets):
        raise ConfigError(
            f"{path} does not fit InceptionV3: it has {len(source)} layers with weights "
            f"(without {IMAGENET_TOP!r}), the model's trunk {len(targets)}")
    plan, problems = [], []
    for src, dst in zip(source, targets):
        problem = _shape_problem(dst.name, "weight", [w.shape for w in dst.weights],
                                 src.shapes, file_layer=src.name)
        if problem:
            problems.append(problem)
        else:
            plan.extend(_Assignment(v, d) for v, d in zip(dst.weights, src.weights))
    if problems:
        raise ConfigError(
            f"{path} does not fit InceptionV3 (layers paired in topological order; "
            f"{len(problems)} of {len(targets)} differ):\n  " + "\n  ".join(problems[:10])
            + ("\n  ..." if len(problems) > 10 else ""))
    report.layers += len(targets)
    if len(source) != len(layers):
        report.skipped.append((IMAGENET_TOP, "the 1000 ImageNet classes are never loaded"))
    return plan


# ----------------------------------------------------------------------------- load
def load_backbone_weights(model, path: str, backbone: str) -> LoadReport:
    """Copy the ImageNet ``backbone`` ("vgg16", "vgg19", "inceptionv3") weights of the Keras
    HDF5 file ``path`` into ``model`` (rules: ``_vgg_plan``, ``_inception_plan``). Every
    layer is checked and every tensor read before the first is written; any problem is a
    ConfigError naming the file. Logs one line per skipped file layer and one with the
    count loaded."""
    if backbone not in BACKBONE_TITLES:
        raise ConfigError(f"unknown backbone {backbone!r}; choose one of {sorted(BACKBONE_TITLES)}")
    report = LoadReport(path)
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ConfigError(f"train.backbone_weights={path!r} is not a readable HDF5 file "
                          f"(Keras .h5 weights expected): {err}") from err
    with f:
        layers = _read_layers(f, path)
        if not layers:
            raise ConfigError(f"{path}: a Keras weights file without any weights")
        plan = (_inception_plan(model, layers, path, report) if backbone == INCEPTIONV3_BACKBONE
                else _vgg_plan(model, layers, backbone, path, report))
        try:
            values = [a.read() for a in plan]
        except OSError as err:  # a truncated download fails here, not at open
            raise ConfigError(f"{path}: cannot read the weights ({err}); damaged file?") from err
    for assignment, value in zip(plan, values):
        assignment.variable.assign(value)
    report.tensors = len(plan)
    for layer, reason in report.skipped:
        logging.info("Backbone weights: skipped file layer %s (%s)", layer, reason)
    logging.info("Backbone weights: %d tensors of %d %s layers loaded into %s from %s",
                 report.tensors, report.layers, BACKBONE_TITLES[backbone], model.name, path)
    return report
