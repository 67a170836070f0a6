"""Per-lesion AUPR from streamed pixel-score histograms (coopseg.evaluation.pixel_ranking)."""
import math

import numpy as np
import pytest
import tensorflow as tf

from coopseg.evaluation import metric_tables as mr
from coopseg.evaluation import pixel_ranking as pr


def _two_class(scores, labels):
    """Probabilities [1, 1, N, 2] with p(class 1) = scores, and labels [1, 1, N]."""
    p1 = np.asarray(scores, np.float32)
    probs = np.stack([1.0 - p1, p1], axis=-1)[None, None]
    return np.asarray(labels, np.int32)[None, None], probs


def test_hand_computed_aupr_and_curve():
    labels, probs = _two_class([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0])
    hist = pr.PixelScoreHistogram(2, num_bins=10, spacing="linear")
    hist.update_state(labels, probs)
    counts = hist.class_counts(1)
    # Ranked: + - + -. Precision at each positive: 1/1 and 2/3; each adds recall 1/2.
    assert pr.histogram_average_precision(counts) == pytest.approx(0.5 * 1.0 + 0.5 * 2.0 / 3.0)
    assert pr.histogram_average_precision(counts) == pytest.approx(0.8333333333)
    precision, recall, thresholds = pr.histogram_precision_recall_curve(counts)
    np.testing.assert_allclose(thresholds, [0.6, 0.7, 0.8, 0.9])
    np.testing.assert_allclose(precision, [2 / 4, 2 / 3, 1 / 2, 1 / 1, 1.0])
    np.testing.assert_allclose(recall, [1.0, 1.0, 0.5, 0.5, 0.0])
    # One pixel per bin: binning changes nothing, and the bound says so.
    assert pr.binning_error_bound(counts) == 0.0


def test_one_bin_makes_every_pixel_one_threshold():
    labels, probs = _two_class([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0])
    hist = pr.PixelScoreHistogram(2, num_bins=1, spacing="linear")
    hist.update_state(labels, probs)
    # All four tied: precision 2/4 over the whole recall range.
    assert pr.histogram_average_precision(hist.class_counts(1)) == pytest.approx(0.5)


def _random_batch(rng, shape=(3, 12, 10), num_classes=4, ignore_fraction=0.1):
    logits = rng.normal(size=shape + (num_classes,)) * 2.0
    probs = tf.nn.softmax(tf.constant(logits, tf.float32)).numpy()
    labels = rng.integers(0, num_classes, size=shape).astype(np.int32)
    labels[rng.random(shape) < ignore_fraction] = 255
    return labels, probs


@pytest.mark.parametrize("num_bins", [7, 1000])
def test_histogram_equals_sorted_metrics_on_quantised_scores(num_bins):
    rng = np.random.default_rng(1)
    labels, probs = _random_batch(rng)
    hist = pr.PixelScoreHistogram(4, num_bins=num_bins, spacing="linear")
    hist.update_state(labels, probs)
    valid = labels != 255
    for c in range(1, 4):
        truth = labels[valid] == c
        quantised = pr.quantise(probs[..., c][valid], num_bins, "linear")
        counts = hist.class_counts(c)
        assert counts.sum() == valid.sum() and counts[:, 1].sum() == truth.sum()
        assert pr.histogram_average_precision(counts) == pytest.approx(
            mr.average_precision(truth, quantised), abs=1e-12)
        got = pr.histogram_precision_recall_curve(counts)
        want = mr.precision_recall_curve(truth, quantised)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, atol=1e-12)
        # The documented bound holds against the exact (unbinned) AUPR.
        exact = mr.average_precision(truth, probs[..., c][valid].astype(np.float64))
        bound = pr.binning_error_bound(counts)
        assert abs(pr.histogram_average_precision(counts) - exact) <= bound + 1e-12
        if num_bins == 7:
            assert bound > 0


def test_streaming_in_tf_function_equals_one_big_batch():
    rng = np.random.default_rng(2)
    (l1, p1), (l2, p2) = _random_batch(rng), _random_batch(rng)
    streamed = pr.PixelScoreHistogram(4, num_bins=50)

    @tf.function
    def update(labels, probs):
        streamed.update_state(labels, probs)

    update(l1, p1)
    update(l2, p2)
    whole = pr.PixelScoreHistogram(4, num_bins=50)
    whole.update_state(np.concatenate([l1, l2]), np.concatenate([p1, p2]))
    np.testing.assert_array_equal(streamed.counts(), whole.counts())
    assert streamed.counts().shape == (3, 50, 2)


def test_ignored_and_out_of_range_labels_are_excluded():
    labels = np.array([[[1, 255, 0, 7]]], np.int32)
    probs = np.array([[[[0.1, 0.9], [0.0, 1.0], [0.8, 0.2], [0.0, 1.0]]]], np.float32)
    hist = pr.PixelScoreHistogram(2, num_bins=10, spacing="linear")
    hist.update_state(labels, probs)
    counts = hist.class_counts(1)
    assert counts.sum() == 2                      # the 255 and the 7 are not counted
    assert counts[9, 1] == 1 and counts[2, 0] == 1  # p = 0.9 positive, p = 0.2 negative
    assert pr.histogram_average_precision(counts) == 1.0


def test_probability_one_lands_in_the_last_bin():
    labels, probs = _two_class([1.0, 0.0], [1, 0])
    hist = pr.PixelScoreHistogram(2, num_bins=4, spacing="linear")
    hist.update_state(labels, probs)
    np.testing.assert_array_equal(hist.class_counts(1), [[1, 0], [0, 0], [0, 0], [0, 1]])


def test_class_without_positive_pixels_is_nan():
    labels = np.zeros((1, 2, 2), np.int32)  # background only
    probs = np.full((1, 2, 2, 3), 1 / 3, np.float32)
    hist = pr.PixelScoreHistogram(3, num_bins=10, spacing="linear")
    hist.update_state(labels, probs)
    assert math.isnan(pr.histogram_average_precision(hist.class_counts(2)))
    assert math.isnan(pr.binning_error_bound(hist.class_counts(2)))
    _, recall, _ = pr.histogram_precision_recall_curve(hist.class_counts(2))
    assert np.isnan(recall[0])
    # Nothing seen at all is nan too, not an error.
    assert math.isnan(pr.histogram_average_precision(np.zeros((10, 2), np.int64)))


def test_tied_scores_make_a_bin_exact():
    # 200 pixels at one score (a saturated softmax) share a bin with nothing else: the
    # bins-only AUPR is exactly the tie-aware sorted AUPR, and the bound says so.
    scores = np.r_[np.full(200, 0.75), np.linspace(0.01, 0.3, 50)]
    truth = np.r_[np.arange(200) % 3 == 0, np.arange(50) % 5 == 0]
    labels, probs = _two_class(scores, truth.astype(np.int32))
    hist = pr.PixelScoreHistogram(2, num_bins=1000, spacing="linear", exact_top=0)
    hist.update_state(labels, probs)
    counts, ranges = hist.class_counts(1), hist.class_ranges(1)
    exact = mr.average_precision(truth, probs[0, 0, :, 1].astype(np.float64))
    assert pr.histogram_average_precision(counts) == pytest.approx(exact, abs=1e-12)
    assert pr.binning_error_bound(counts) > 0.1          # without knowing they are tied
    assert pr.binning_error_bound(counts, ranges) == 0.0  # knowing it


def test_near_ties_at_the_top_are_ranked_exactly():
    # The demo model's case: many positives and negatives with distinct scores inside
    # the top bin. Bins alone cannot order them (bound ~ 0.5); the exact top can.
    rng = np.random.default_rng(3)
    top = 0.6774406 + rng.uniform(0, 1e-6, 400).astype(np.float32)
    scores = np.r_[top, rng.uniform(0.0, 0.2, 2000)]
    truth = np.r_[rng.random(400) < 0.7, rng.random(2000) < 0.05]
    labels, probs = _two_class(scores, truth.astype(np.int32))
    exact = mr.average_precision(truth, probs[0, 0, :, 1].astype(np.float64))
    binned = pr.PixelScoreHistogram(2, exact_top=0)
    binned.update_state(labels, probs)
    assert binned.class_ranking(1).error_bound() > 0.3
    for exact_top in (500, 4096):  # part of the ranking kept exactly, or all of it
        hist = pr.PixelScoreHistogram(2, exact_top=exact_top)
        for start in range(0, scores.size, 700):  # streamed in batches
            hist.update_state(labels[:, :, start:start + 700], probs[:, :, start:start + 700])
        ranking = hist.class_ranking(1)
        assert ranking.error_bound() <= 0.005
        assert abs(ranking.average_precision() - exact) <= ranking.error_bound() + 1e-12
        assert ranking.counts.sum() == scores.size and ranking.counts[:, 1].sum() == truth.sum()
    assert hist.class_ranking(1).average_precision() == pytest.approx(exact, abs=1e-12)
    hist.reset_state()
    assert hist.class_ranking(1).counts.size == 0
