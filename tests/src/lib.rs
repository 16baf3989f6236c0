//! End-to-end suite of Mentorstream; the tests live in `tests/tests/`.
