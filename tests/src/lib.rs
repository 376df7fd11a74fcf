//! Cross-crate integration tests of peas; the tests live in `tests/tests/`.
