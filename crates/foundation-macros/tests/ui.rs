//! Compile tests for the macros: `pass/` must build and run, `fail/` must fail with the
//! errors in the `.stderr` beside each case.
//!
//! After changing a message, regenerate with
//! `TRYBUILD=overwrite cargo test -p foundation-macros --test ui` and read the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
