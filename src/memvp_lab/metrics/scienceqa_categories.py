"""ScienceQA accuracy with the official breakdown (``get_scores`` of the ScienceQA repository).

Categories of a problem: subject ``NAT`` / ``SOC`` / ``LAN`` (natural, social, language
science); context ``TXT`` (has a hint), ``IMG`` (has an image), ``NO`` (neither); grade ``G1-6`` /
``G7-12``. A problem can be in several (a hint and an image: ``TXT`` and ``IMG``).
"""

from __future__ import annotations

SUBJECTS = {"natural science": "NAT", "social science": "SOC", "language science": "LAN"}
CATEGORIES = ("NAT", "SOC", "LAN", "TXT", "IMG", "NO", "G1-6", "G7-12")


def problem_categories(problem: dict) -> list[str]:
    """The categories one problem counts toward."""
    out = []
    if problem.get("subject") in SUBJECTS:
        out.append(SUBJECTS[problem["subject"]])
    hint, image = problem.get("hint"), problem.get("image")
    if hint:
        out.append("TXT")
    if image:
        out.append("IMG")
    if not hint and image is None:
        out.append("NO")
    grade = str(problem.get("grade", ""))
    if grade.startswith("grade") and grade[5:].isdigit():
        out.append("G1-6" if int(grade[5:]) <= 6 else "G7-12")
    return out


def scienceqa_scores(predictions: dict[str, int], problems: dict, split: str = "test") -> dict[str, float]:
    """Accuracy in percent, overall (``Average``) and per category, over every problem of ``split``.

    Args:
        predictions: qid -> predicted choice index (-1 when no option was produced).
        problems: the parsed ``problems.json``.
        split: the problems scored (each needs a prediction).

    Raises:
        KeyError: a problem of ``split`` has no prediction (its qid is named).
    """
    correct: dict[str, list[bool]] = {c: [] for c in (*CATEGORIES, "Average")}
    for qid, problem in problems.items():
        if problem.get("split") != split:
            continue
        if qid not in predictions:
            raise KeyError(f"no prediction for ScienceQA {split} problem {qid!r}")
        right = int(predictions[qid]) == int(problem["answer"])
        correct["Average"].append(right)
        for category in problem_categories(problem):
            correct[category].append(right)
    return {k: 100.0 * sum(v) / len(v) if v else 0.0 for k, v in correct.items()}
