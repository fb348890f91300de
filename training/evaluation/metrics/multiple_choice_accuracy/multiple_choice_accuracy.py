"""Accuracy of multiple-choice predictions (HellaSwag acc / acc_norm), as an offline `evaluate` metric."""

import datasets
import evaluate

_DESCRIPTION = "Fraction of examples whose predicted choice index equals the gold index."
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted choice per example.
    references (list of int): gold choice per example.
Returns:
    accuracy (float), correct (int), total (int)
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MultipleChoiceAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int32"),
                                        "references": datasets.Value("int32")}),
        )

    def _compute(self, predictions, references):
        correct = sum(int(p == r) for p, r in zip(predictions, references))
        total = len(references)
        return {"accuracy": correct / total if total else 0.0, "correct": correct, "total": total}
