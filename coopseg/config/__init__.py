"""Typed configuration for coopseg, as plain dataclasses: an experiment is data
(``experiments/rows/``) and absl flags at the edge only override fields. By seam:
``taxonomy`` (classes, grades), ``choices`` (closed lists), ``methods`` (the method
table), ``schema`` (the dataclasses and checks), ``serialization`` (dicts, overrides)."""
from coopseg.config.choices import (COLOR_JITTER_PRESETS, DECODER_BLOCKS, GRADIENT_BALANCE,
                                    MIXED_PRECISION_POLICIES, PAG_MODES, SEG_CLASS_WEIGHTINGS,
                                    STRATEGIES, TRAIN_MODES)
from coopseg.config.errors import ConfigError
from coopseg.config.methods import (BACKBONE_OF_METHOD, DECOUPLED_METHODS,
                                    DEFAULT_METHOD, METHOD_SPECS, METHODS, MethodSpec,
                                    backbone_of, method_spec)
from coopseg.config.schema import (VGG16_WIDTHS, AgentConfig, CooperationConfig, DataConfig,
                                   DecoupledConfig, ExperimentConfig, ModelConfig, RunConfig,
                                   TrainConfig, check_backbone_config, check_decoupled_shape,
                                   restores_stage1, scaled_warmup, use_class_names)
from coopseg.config.serialization import (NOT_RESULT_DEFINING, coerce_to_type, from_dict,
                                          override, result_dict, to_dict,
                                          upgrade_legacy_fields)
from coopseg.config.taxonomy import (IGNORE_LABEL, LESION_CLASSES, LESION_PRIORITY,
                                     MAX_PARTIAL_CLASSES, NUM_GRADES, PARTIAL_LABEL_BASE,
                                     partial_label)

__all__ = [
    "AgentConfig", "BACKBONE_OF_METHOD", "COLOR_JITTER_PRESETS", "ConfigError",
    "CooperationConfig", "DECODER_BLOCKS", "DECOUPLED_METHODS", "DEFAULT_METHOD",
    "DataConfig", "DecoupledConfig", "ExperimentConfig", "GRADIENT_BALANCE", "IGNORE_LABEL",
    "LESION_CLASSES", "LESION_PRIORITY", "MAX_PARTIAL_CLASSES", "METHODS", "METHOD_SPECS",
    "MIXED_PRECISION_POLICIES", "MethodSpec", "ModelConfig", "NOT_RESULT_DEFINING",
    "NUM_GRADES", "PAG_MODES", "PARTIAL_LABEL_BASE", "RunConfig", "SEG_CLASS_WEIGHTINGS",
    "STRATEGIES", "TRAIN_MODES", "TrainConfig", "VGG16_WIDTHS", "backbone_of",
    "check_backbone_config", "check_decoupled_shape", "coerce_to_type", "from_dict",
    "method_spec", "override", "partial_label", "restores_stage1", "result_dict",
    "scaled_warmup", "to_dict", "upgrade_legacy_fields", "use_class_names",
]
