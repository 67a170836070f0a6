"""Image-level multi-label metrics (DecoupledNet stage 1) against hand-computed values."""
import numpy as np
import pytest

from coopseg.config import ConfigError
from coopseg.evaluation.multilabel_metrics import MultiLabelMetrics, average_precision


def test_average_precision_by_hand():
    # Ranked: +, -, +, -  -> precisions at the positives 1/1 and 2/3.
    labels = np.array([1, 0, 1, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    assert average_precision(labels, scores) == pytest.approx((1 + 2 / 3) / 2)
    # Reversed: -, +, -, +  -> 1/2 and 2/4.
    assert average_precision(labels, 1 - scores) == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert average_precision(np.zeros(4), scores) is None  # no positive: undefined


def test_tied_scores_do_not_depend_on_input_order():
    # All tied: one block of 4 with 2 positives -> precision 2/4 for both.
    for labels in ([1, 1, 0, 0], [0, 0, 1, 1]):
        assert average_precision(np.array(labels), np.full(4, 0.5)) == pytest.approx(0.5)


def test_metrics_at_threshold_and_map():
    m = MultiLabelMetrics(("a", "b", "c"), threshold=0.5)
    m.update_state([[1, 0, 0], [0, 1, 0]], [[0.9, 0.6, 0.1], [0.2, 0.4, 0.3]])
    m.update_state([[1, 1, 0]], [[0.7, 0.8, 0.2]])
    r = m.result_dict()
    # Passed pairs: (0,a) (0,b) (2,a) (2,b) -> 3 true of 4; positives: 4 pairs.
    assert r["precision"] == pytest.approx(3 / 4) and r["recall"] == pytest.approx(3 / 4)
    assert r["f1"] == pytest.approx(3 / 4)
    assert r["images_passing_threshold"] == pytest.approx(2 / 3)
    assert r["per_class_ap"]["a"] == pytest.approx(1.0)
    # b ranked: 0.8(+) 0.6(-) 0.4(+) -> (1 + 2/3) / 2; c has no positive.
    assert r["per_class_ap"]["b"] == pytest.approx((1 + 2 / 3) / 2)
    assert r["per_class_ap"]["c"] is None
    assert r["map"] == pytest.approx((1 + (1 + 2 / 3) / 2) / 2)
    assert r["num_images"] == 3


def test_bad_shapes_and_threshold_are_errors():
    with pytest.raises(ConfigError, match="threshold"):
        MultiLabelMetrics(("a",), threshold=1.5)
    with pytest.raises(ValueError, match=r"\[batch, 2\]"):
        MultiLabelMetrics(("a", "b")).update_state([[1, 0, 0]], [[0.1, 0.2, 0.3]])
