//! Running proptest properties in the test binaries (tests/fuzz_parsing.rs, tests/quoting_servers.rs)
//! and the generators they share.

use std::time::Instant;

use proptest::{
    collection::vec,
    prelude::*,
    sample::select,
    test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner},
};

use super::report;

/// Runs one property with proptest's settings (`PROPTEST_CASES` cases, 256 by default) and,
/// once it held for every case, records a `fuzz` row for the reliability report. A failure
/// panics with the shrunk input and is saved next to `source_file` (pass `file!()`) as
/// `NAME.proptest-regressions`, which later runs replay first.
pub fn check<S>(
    name: &str,
    source_file: &'static str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    let config = Config {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        source_file: Some(source_file),
        ..Config::default()
    };
    let cases = config.cases;
    let started = Instant::now();
    if let Err(failure) = TestRunner::new(config).run(&strategy, test) {
        panic!("{name}: {failure}");
    }
    report::record(
        "fuzz",
        name,
        "passed",
        &format!("{cases} cases in {:.1?}", started.elapsed()),
    );
}

/// Identifiers meant to break out of their quotes: backticks and double quotes (odd and
/// doubled), closing brackets, comments, statement ends, escapes Neo4j decodes, controls.
pub fn hostile_identifier() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        select(vec![
            "`",
            "``",
            "\"",
            "\"\"",
            "'",
            "}",
            ")",
            "]",
            "//",
            "/*",
            "*/",
            "\n",
            "\r",
            ";",
            " ",
            "\\",
            "\\\\",
            "\\u0060",
            "\\uuu0060",
            "\\u0022",
            "\\u005C",
            "u0060",
            "\0",
            "--",
        ])
        .prop_map(str::to_owned),
        any::<char>().prop_map(String::from),
        "[a-zA-Z0-9_]{1,5}",
    ];
    prop_oneof![
        any::<String>(),
        vec(fragment, 0..12).prop_map(|parts| parts.concat())
    ]
}
