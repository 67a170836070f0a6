"""Starting backbones from Keras ImageNet weight files on disk (train.backbone_weights)."""
from __future__ import annotations

import json
import os
import re

import h5py
import numpy as np
import pytest
import tensorflow as tf

from coopseg.config import (ConfigError, DecoupledConfig, ExperimentConfig, ModelConfig, RunConfig,
                            TrainConfig, to_dict)
from coopseg.models.backbone_weights import load_backbone_weights
from coopseg.models.baselines.fcn8s import VGG16_BLOCKS, scaled_width
from coopseg.models.decouplednet.network import build_decouplednet_classifier
from coopseg.models.decouplednet.system import restore_stage1_classifier
from coopseg.models.layers.input_adapter import (IMAGENET_PIXEL_STD_RGB, LAYER_NAME, InputAdapter,
                                                 input_adapter)
from coopseg.models.registry import build_system
from coopseg.serving.export import export_saved_model
from coopseg.training.loop import CooperativeTrainer
from coopseg.training.tasks import init_fn

WIDTH = 1 / 16  # VGG widths 4, 8, 16, 32, 32; fc 256: small files, same layout


# ----------------------------------------------------------------------------- helpers
def _config(method: str, mode: str, weights: str = "", size: int = 32, width: float = WIDTH,
            vgg_bn: bool = False, fc_units: int = 16, model_dir: str = "",
            **train) -> ExperimentConfig:
    return ExperimentConfig(
        method=method,
        model=ModelConfig(input_size=size, vgg_width_multiplier=width, vgg_batch_norm=vgg_bn),
        train=TrainConfig(mode=mode, backbone_weights=weights, **train),
        decoupled=DecoupledConfig(width_multiplier=width, fc_units=fc_units, bridge_filters=8),
        run=RunConfig(model_dir=model_dir or RunConfig().model_dir))


def _randomize(model: tf.keras.Model, seed: int = 1) -> None:
    """Every weight random (Keras starts biases and BN statistics at 0/1: equal in any two
    models). Kernels ~ N(0, 1/fan_in) and vectors in [0.5, 1.5] (valid BN variances) keep
    activations O(1), so forward passes stay meaningful."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32) if w.ndim == 1 else
                       rng.normal(0, np.prod(w.shape[:-1]) ** -0.5, w.shape).astype(np.float32)
                       for w in model.get_weights()])


def _write_keras1_vgg16(path, width: float = WIDTH, fc_units: int = 256, top: bool = True,
                        seed: int = 0, shapes=None) -> dict:
    """A VGG-16 weights file in the layout of Keras' published
    ``vgg16_weights_tf_dim_ordering_tf_kernels.h5`` (Keras 1 names ``<layer>_W_1:0``,
    weightless layers listed with no weights), at ``width``. Returns layer -> arrays."""
    rng = np.random.default_rng(seed)
    weights, names, cin = {}, ["input_1"], 3
    for b, (filters, convs) in enumerate(VGG16_BLOCKS, start=1):
        w = scaled_width(filters, width)
        for i in range(1, convs + 1):
            weights[f"block{b}_conv{i}"] = [rng.normal(0, 0.1, (3, 3, cin, w)),
                                            rng.normal(0, 0.1, (w,))]
            names.append(f"block{b}_conv{i}")
            cin = w
        names.append(f"block{b}_pool")
    if top:
        for name, shape in (("fc1", (7 * 7 * cin, fc_units)), ("fc2", (fc_units, fc_units)),
                            ("predictions", (fc_units, 1000))):
            weights[name] = [rng.normal(0, 0.1, shape), rng.normal(0, 0.1, shape[-1:])]
        names[names.index("block5_pool") + 1:] = ["flatten", "fc1", "fc2", "predictions"]
    for name, override in (shapes or {}).items():
        weights[name] = [rng.normal(0, 0.1, s) for s in override]
    weights = {k: [a.astype(np.float32) for a in v] for k, v in weights.items()}
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n in names])
        f.attrs["backend"], f.attrs["keras_version"] = b"tensorflow", b"1.1.0"
        for name in names:
            group = f.create_group(name)
            arrays = weights.get(name, [])
            weight_names = [f"{name}_W_1:0", f"{name}_b_1:0"][:len(arrays)]
            group.attrs["weight_names"] = np.array([n.encode() for n in weight_names], dtype="S")
            for wname, value in zip(weight_names, arrays):
                group.create_dataset(wname, data=value)
    return weights


def _init(cfg: ExperimentConfig):
    system = build_system(cfg)
    init = init_fn(cfg, system)
    assert init is not None
    init()
    return system


def _assert_equal_by_name(model: tf.keras.Model, source: tf.keras.Model) -> int:
    checked = 0
    for layer in (layer for layer in source.layers if layer.weights):
        for want, got in zip(layer.get_weights(), model.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(got, want, err_msg=layer.name)
            checked += 1
    return checked


# ----------------------------------------------------------------------------- real Keras files
def test_keras_vgg19_full_model_file_loads_into_the_vgg19_classifier(tmp_path):
    source = tf.keras.applications.VGG19(weights=None, include_top=False, input_shape=(32, 32, 3))
    _randomize(source)
    source.save(str(tmp_path / "vgg19.h5"))  # a full-model file: weights under model_weights
    cfg = _config("vgg19", "clf_only", str(tmp_path / "vgg19.h5")).validate()
    model = _init(cfg).clf_model
    assert _assert_equal_by_name(model, source) == 32  # 16 convs: kernel + bias
    assert model.layers[1].name == LAYER_NAME
    assert (len(model.layers), model.count_params()) == (26, 20026949)  # adapter: no weights


def test_keras_inceptionv3_file_pairs_layers_in_topological_order(tmp_path):
    # Layers made first shift every auto-generated name (conv2d_N, batch_normalization_N):
    # the file's and the model's names then differ, so only the order can pair them.
    for _ in range(3):
        tf.keras.layers.Conv2D(4, 3)(tf.keras.Input((8, 8, 3)))
        tf.keras.layers.BatchNormalization()(tf.keras.Input((8, 8, 3)))
    source = tf.keras.applications.InceptionV3(weights=None, include_top=False,
                                               input_shape=(75, 75, 3))
    _randomize(source)
    source.save_weights(str(tmp_path / "inception.h5"))
    cfg = _config("inceptionv3", "clf_only", str(tmp_path / "inception.h5"), size=75)
    model = _init(cfg).clf_model  # 75 px: not a JointSeg encoder size, so no validate()

    def by_creation(m):  # the same builder made both: creation order pairs them independently
        def key(layer):
            return (type(layer).__name__, int(re.search(r"(\d+)$", layer.name).group(1)))
        return sorted((layer for layer in m.layers if layer.weights
                       and type(layer).__name__ != "Dense"), key=key)

    ours, theirs = by_creation(model), by_creation(source)
    assert len(ours) == len(theirs) == 188
    assert ours[0].name != theirs[0].name  # the names really are offset
    for dst, src in zip(ours, theirs):
        for got, want in zip(dst.get_weights(), src.get_weights()):
            np.testing.assert_array_equal(got, want, err_msg=f"{dst.name} <- {src.name}")
    assert model.layers[1].name == LAYER_NAME


def test_keras_vgg16_notop_file_loads_into_decouplednet_classifier(tmp_path):
    source = tf.keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    _randomize(source)
    source.save_weights(str(tmp_path / "vgg16_notop.h5"))
    cfg = _config("decouplednet", "clf_only", str(tmp_path / "vgg16_notop.h5"), width=1.0)
    # The classifier alone: the whole system would add a width-1 deconvolution network.
    classifier = build_decouplednet_classifier(cfg.validate())
    fc6_before = classifier.get_layer("fc6").get_weights()[0].copy()
    report = load_backbone_weights(classifier, str(tmp_path / "vgg16_notop.h5"), "vgg16")
    assert report.tensors == 26 and not report.skipped
    assert _assert_equal_by_name(classifier, source) == 26
    np.testing.assert_array_equal(classifier.get_layer("fc6").get_weights()[0], fc6_before)
    assert classifier.layers[1].name == LAYER_NAME


# ----------------------------------------------------------------------------- VGG-16 with top
def test_vgg16_file_with_top_gives_fcn8s_convolutionalised_fc6_fc7(tmp_path):
    path = str(tmp_path / "vgg16.h5")
    weights = _write_keras1_vgg16(path)
    cfg = _config("fcn8s", "seg_only", path).validate()
    model = _init(cfg).seg_model
    for name, arrays in weights.items():
        if name.startswith("block"):
            for got, want in zip(model.get_layer(name).get_weights(), arrays):
                np.testing.assert_array_equal(got, want, err_msg=name)
    fc6_kernel, fc6_bias = model.get_layer("fc6").get_weights()
    np.testing.assert_array_equal(fc6_kernel, weights["fc1"][0].reshape(7, 7, 32, 256))
    np.testing.assert_array_equal(fc6_bias, weights["fc1"][1])
    np.testing.assert_array_equal(model.get_layer("fc7").get_weights()[0],
                                  weights["fc2"][0].reshape(1, 1, 256, 256))
    # "predictions" (the ImageNet classes) never loads: FCN's class scores stay zero.
    assert not np.any(model.get_layer("score_fr").get_weights()[0])


def test_fc_reshape_is_the_flatten_dense_equivalence(tmp_path):
    """fc1 as a Dense on flattened pool5 == fc6 as a 7x7 conv: DeconvNet at 224 px gets
    the same numbers from the file as DecoupledNet's Dense fc6 does."""
    path = str(tmp_path / "vgg16.h5")
    weights = _write_keras1_vgg16(path, fc_units=16)
    deconv = _init(_config("deconvnet", "seg_only", path, size=224).validate()).seg_model
    system = _init(_config("decouplednet", "clf_only", path, size=224).validate())
    decoupled = system.clf_model
    # model.vgg_batch_norm=false drops BN from the VGG-16 parts only: the deconvolution
    # networks keep theirs, as Noh et al.'s DeconvNet has it.
    for model, vgg in ((deconv, deconv), (system.seg_model, decoupled)):
        names = {layer.name for layer in model.layers} | {layer.name for layer in vgg.layers}
        assert "deconv1_1_bn" in names and "block1_conv1_bn" not in names
    pool5 = np.random.default_rng(0).normal(size=(2, 7, 7, 32)).astype(np.float32)
    kernel, bias = deconv.get_layer("fc6").get_weights()
    as_conv = tf.nn.conv2d(pool5, kernel, 1, "VALID").numpy().reshape(2, 16) + bias
    as_dense = pool5.reshape(2, -1) @ decoupled.get_layer("fc6").get_weights()[0] + bias
    np.testing.assert_allclose(as_conv, as_dense, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(decoupled.get_layer("fc6").get_weights()[0], weights["fc1"][0])
    np.testing.assert_array_equal(decoupled.get_layer("fc7").get_weights()[0], weights["fc2"][0])


def test_fc_layers_that_do_not_fit_are_skipped_not_fatal(tmp_path):
    path = str(tmp_path / "vgg16.h5")
    _write_keras1_vgg16(path, fc_units=16)
    system = build_system(_config("decouplednet", "clf_only", path, size=32))  # pool5 1x1
    fc6 = system.clf_model.get_layer("fc6").get_weights()[0].copy()
    report = load_backbone_weights(system.clf_model, path, "vgg16")
    assert report.tensors == 26
    skipped = dict(report.skipped)
    assert "(1568, 16)" in skipped["fc1"] and "(32, 16)" in skipped["fc1"]
    assert "fc2" in skipped and "predictions" in skipped
    np.testing.assert_array_equal(system.clf_model.get_layer("fc6").get_weights()[0], fc6)


# ----------------------------------------------------------------------------- errors
def test_wrong_width_names_the_layer_and_both_shapes(tmp_path):
    path = str(tmp_path / "vgg16.h5")
    _write_keras1_vgg16(path)
    with pytest.raises(ConfigError, match=r"block1_conv1.*\(3, 3, 3, 8\).*\(3, 3, 3, 4\)") as err:
        _init(_config("fcn8s", "seg_only", path, width=1 / 8))
    assert path in str(err.value) and "vgg_width_multiplier" in str(err.value)


def test_nothing_is_written_unless_every_layer_fits(tmp_path):
    path = str(tmp_path / "vgg16.h5")
    _write_keras1_vgg16(path, shapes={"block5_conv3": [(3, 3, 32, 31), (31,)]})
    system = build_system(_config("vgg16", "clf_only", path))
    before = [w.numpy().copy() for w in system.clf_model.weights]
    with pytest.raises(ConfigError, match=r"block5_conv3.*\(3, 3, 32, 32\).*\(3, 3, 32, 31\)"):
        init_fn(system=system, config=_config("vgg16", "clf_only", path))()
    for want, got in zip(before, system.clf_model.weights):
        np.testing.assert_array_equal(got.numpy(), want)


def test_batchnorm_trunk_is_told_to_drop_batchnorm(tmp_path):
    path = str(tmp_path / "vgg16.h5")
    _write_keras1_vgg16(path)
    with pytest.raises(ConfigError, match=r"--set=model\.vgg_batch_norm=false"):
        _init(_config("fcn8s", "seg_only", path, vgg_bn=True))


def test_file_of_another_network_is_rejected(tmp_path):
    path = str(tmp_path / "vgg16.h5")
    _write_keras1_vgg16(path)
    model = tf.keras.Sequential([tf.keras.layers.Dense(2, input_shape=(3,))])
    with pytest.raises(ConfigError, match=r"no InceptionV3 layer"):
        load_backbone_weights(model, path, "inceptionv3")
    with pytest.raises(ConfigError, match=r"not a VGG-19 file: it lacks \['block3_conv4'"):
        load_backbone_weights(model, path, "vgg19")
    text = tmp_path / "weights.h5"
    text.write_text("not hdf5")
    with pytest.raises(ConfigError, match="not a readable HDF5 file"):
        load_backbone_weights(model, str(text), "vgg16")
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(ConfigError, match="not a Keras weights file"):
        load_backbone_weights(model, str(tmp_path / "plain.h5"), "vgg16")


def test_validate_rejects_missing_file_unsupported_method_and_two_inits(tmp_path):
    path = str(tmp_path / "vgg16.h5")
    _write_keras1_vgg16(path, top=False)
    with pytest.raises(ConfigError, match="no such file"):
        _config("fcn8s", "seg_only", str(tmp_path / "missing.h5")).validate()
    jointseg = _config("jointseg", "joint", path)
    jointseg.model.input_size = 224
    with pytest.raises(ConfigError, match=r"'jointseg'.*fcn8s, vgg16, vgg19, inceptionv3, decouplednet, deconvnet"):
        jointseg.validate()
    with pytest.raises(ConfigError, match="init_encoder_from"):
        _config("fcn8s", "seg_only", path, init_encoder_from=str(tmp_path)).validate()
    # DecoupledNet stage 2: the file only says stage 1 started from it (not read again).
    _config("decouplednet", "seg_only", "gone.h5", init_encoder_from=str(tmp_path)).validate()


def test_stage2_and_two_step_must_agree_with_the_source_adapter(tmp_path):
    stage1 = tmp_path / "stage1"
    stage1.mkdir()
    source = _config("decouplednet", "clf_only", "/data/vgg16.h5")
    (stage1 / "config.json").write_text(json.dumps(to_dict(source)))
    plain = _config("decouplednet", "seg_only", init_encoder_from=str(stage1))
    with pytest.raises(ConfigError, match="same --backbone_weights"):
        restore_stage1_classifier(None, plain)
    # FCN-8s two-step from a VGG-16 that saw images through the adapter: refused.
    source.method = "vgg16"
    (stage1 / "config.json").write_text(json.dumps(to_dict(source)))
    cfg = _config("fcn8s", "seg_only", init_encoder_from=str(stage1))
    with pytest.raises(ConfigError, match="ImageNet input adapter"):
        init_fn(cfg, build_system(cfg))()


def test_resumed_run_restores_its_checkpoint_and_does_not_reload(tmp_path):
    path = str(tmp_path / "vgg16.h5")
    weights = _write_keras1_vgg16(path, top=False)
    cfg = _config("vgg16", "clf_only", path, model_dir=str(tmp_path / "run"))
    system = build_system(cfg)
    trainer = CooperativeTrainer(cfg, system)
    trainer.restore_or_initialize(init_fn(cfg, system))
    kernel = system.clf_model.get_layer("block1_conv1").kernel
    np.testing.assert_array_equal(kernel.numpy(), weights["block1_conv1"][0])
    kernel.assign(tf.fill(kernel.shape, 0.25))  # "trained"
    trainer.save()
    os.remove(path)  # a reload would now fail
    resumed = build_system(cfg)
    CooperativeTrainer(cfg, resumed).restore_or_initialize(init_fn(cfg, resumed))
    np.testing.assert_array_equal(resumed.clf_model.get_layer("block1_conv1").kernel.numpy(),
                                  np.full(kernel.shape, 0.25, np.float32))


# ----------------------------------------------------------------------------- input adapter
# (layers, parameters) of each model as built before backbone weights existed.
# (VGG-19: 25 layers, 20026949 parameters; checked with the adapter in the VGG-19 file test.)
TODAY = {"fcn8s": [(62, 543873)], "vgg16": [(48, 58785)],
         "decouplednet": [(53, 59522), (56, 121180)], "deconvnet": [(99, 118735)]}


@pytest.mark.parametrize("method", sorted(TODAY))
def test_adapter_only_with_backbone_weights(method, tmp_path):
    mode = "seg_only" if method in ("fcn8s", "deconvnet") else "clf_only"
    cfg = _config(method, mode, vgg_bn=True)
    parts = build_system(cfg).parts.values()
    assert [(len(m.layers), m.count_params()) for m in parts] == TODAY[method]
    assert not [layer for m in parts for layer in m.layers if isinstance(layer, InputAdapter)]
    cfg.train.backbone_weights = "vgg.h5"
    adapted = list(build_system(cfg).parts.values())
    assert [(len(m.layers), m.count_params()) for m in adapted] == [
        (n + (i == 0), p) for i, (n, p) in enumerate(TODAY[method])]
    assert isinstance(adapted[0].get_layer(LAYER_NAME), InputAdapter)


def test_adapter_numbers_and_serialisation():
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 3)).astype(np.float32)
    caffe = input_adapter("caffe")
    np.testing.assert_allclose(caffe(x).numpy(), x[..., ::-1] * [57.375, 57.12, 58.395],
                               rtol=1e-6)
    np.testing.assert_allclose(input_adapter("inception")(x).numpy(),
                               x * np.array(IMAGENET_PIXEL_STD_RGB) / 127.5, rtol=1e-6)
    clone = tf.keras.layers.deserialize(tf.keras.layers.serialize(caffe))
    assert isinstance(clone, InputAdapter) and clone.get_config() == caffe.get_config()
    with pytest.raises(ConfigError, match="unknown input adapter"):
        input_adapter("torch")


@pytest.mark.parametrize("kind, preprocess", [
    ("caffe", tf.keras.applications.vgg16.preprocess_input),
    ("inception", tf.keras.applications.inception_v3.preprocess_input)])
def test_adapter_approximates_keras_preprocessing_of_imagenet_like_photos(kind, preprocess):
    """On photos with ImageNet's pixel statistics, adapter(per-image standardised) has the
    channel order and scale of Keras' own preprocessing of the raw photo."""
    rng = np.random.default_rng(0)
    photos = rng.normal([123.68, 116.779, 103.939], IMAGENET_PIXEL_STD_RGB,
                        size=(4, 64, 64, 3)).astype(np.float32)
    want = preprocess(photos.copy())
    standardised = tf.image.per_image_standardization(photos).numpy()
    got = input_adapter(kind)(standardised).numpy()
    for c in range(3):  # the same channel: exactly correlated (an affine map per image)
        assert np.corrcoef(got[..., c].ravel(), want[..., c].ravel())[0, 1] > 0.999
    ratio = got.std(axis=(0, 1, 2)) / want.std(axis=(0, 1, 2))
    np.testing.assert_allclose(ratio, 1.0, atol=0.03)
    unadapted = standardised.std(axis=(0, 1, 2)) / want.std(axis=(0, 1, 2))
    assert np.all(np.abs(unadapted - 1.0) > 0.5)  # why the adapter exists


def test_adapter_is_part_of_the_model_and_of_the_export(tmp_path):
    cfg = _config("fcn8s", "seg_only", "vgg16.h5")
    system = build_system(cfg)
    _randomize(system.seg_model)
    cfg.train.backbone_weights = ""
    plain = build_system(cfg).seg_model
    plain.set_weights(system.seg_model.get_weights())
    photos = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    x = tf.image.per_image_standardization(photos)
    adapted = system.seg_model(x, training=False).numpy()
    np.testing.assert_allclose(adapted, plain(input_adapter("caffe")(x), training=False).numpy(),
                               rtol=1e-4, atol=1e-4)
    assert not np.allclose(adapted, plain(x, training=False).numpy(), atol=1e-2)
    cfg.train.backbone_weights = "vgg16.h5"
    served = tf.saved_model.load(export_saved_model(system, cfg, str(tmp_path / "export")))
    probs = served.signatures["serving_default"](images=tf.constant(photos))
    np.testing.assert_allclose(probs["segmentation_probabilities"].numpy(),
                               tf.nn.softmax(adapted).numpy(), atol=1e-5)
