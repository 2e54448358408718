"""The real hh-rlhf files (shared data, outside the repo): counts and the only genuine bad rows.

Every row parses; the only rows reported are genuinely unusable as preference pairs: an empty
final response, or chosen identical to rejected. Rows whose response itself contains an
``"\\n\\nAssistant:"`` marker (harmless-base 1061, 1443, 1668; helpful-base 146, 300, ...) must
not be reported: merging consecutive same-role turns keeps their prompts equal.
"""

from pathlib import Path

import pytest

from alignflow.data import explore

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
HH = SHARED_DATA / "hh-rlhf"
EMPTY_CHOSEN = "chosen response (the final Assistant turn) is empty"
EMPTY_REJECTED = "rejected response (the final Assistant turn) is empty"
IDENTICAL = "chosen is identical to rejected"

EXPECTED = {
    "harmless-base": (1965, {EMPTY_CHOSEN: [74, 427, 777, 935]}),
    "helpful-base": (2001, {EMPTY_REJECTED: [631, 1036, 1756], IDENTICAL: [614, 1845]}),
    "helpful-rejection-sampled": (2337, {IDENTICAL: [202, 245, 265, 308, 331, 432, 591, 618, 642, 650, 750, 1001, 1092,
                                                     1096, 1516, 1532, 1562, 1674, 1685, 1920, 2155, 2199, 2206, 2286,
                                                     2323]}),
}


@pytest.mark.skipif(not HH.is_dir(), reason=f"real hh-rlhf data not found at {HH}")
@pytest.mark.parametrize("name", list(EXPECTED))
def test_real_hh_rlhf_file(name):
    rows, expected_issues = EXPECTED[name]
    report = explore(HH / f"{name}.jsonl.gz", samples=0)
    assert report.kind == "preference"
    assert report.rows_read == rows
    assert report.good_rows == rows - sum(len(lines) for lines in expected_issues.values())
    found = {group.reason: group.count for group in report.malformed}
    assert found == {reason: len(lines) for reason, lines in expected_issues.items()}
    for group in report.malformed:
        assert group.first_locations == [f"{HH / name}.jsonl.gz:{line}" for line in expected_issues[group.reason][:3]]
    assert report.identical_pairs == len(expected_issues.get(IDENTICAL, []))
