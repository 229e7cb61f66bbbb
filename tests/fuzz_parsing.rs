//! Property-based fuzzing (proptest) of the code that turns user text into behaviour: `spec.uri`
//! and the durations (`settings`, `duration`), and the identifier quoting that builds Cypher
//! (`schema`) and SQL (`engine::postgres`) statements. Pure: no test environment needed.
//!
//! CI runs each property with proptest's default of 256 cases (`PROPTEST_CASES` overrides it);
//! the README's "Fuzzing" section has the longer run. A failure prints the shrunk input and is
//! saved in tests/fuzz_parsing.proptest-regressions, which later runs replay first.

mod common;

use std::time::Duration;

use common::{
    fuzz::{check, hostile_identifier},
    report,
};
use dbconn_operator::{
    api::{ConstraintType, DatabaseConnectionSpec, IndexType},
    duration,
    engine::{self, ENGINES, postgres::quote_identifier},
    schema::{Declared, Existing, Kind, Target, drop_statement, quote},
    settings::ConnectionSettings,
};
use proptest::{collection::vec, prelude::*, sample::select, test_runner::TestCaseError};
use serde_json::{Value, json};
use url::Url;

// ---------------------------------------------------------------------------------------------
// spec.uri and durations

/// A spec as the apiserver would hand it over, built through serde so that fields added to the
/// API later keep their defaults here.
fn spec(engine: &str, uri: &str, extra: Value) -> DatabaseConnectionSpec {
    let mut value = json!({
        "engine": engine,
        "uri": uri,
        "credentials": {"secretRef": {"name": "login"}},
    });
    for (key, field) in extra.as_object().into_iter().flatten() {
        value[key] = field.clone();
    }
    serde_json::from_value(value).expect("the spec deserializes")
}

/// Short text that breaks URIs: delimiters, escapes, controls, non-ASCII.
fn piece() -> impl Strategy<Value = String> {
    let awkward = select(vec![
        '@', ':', '/', '?', '#', '%', '[', ']', '\\', ' ', '\n', '\t', '\0', '.', '-', '+', '=',
        '&', '`', 'é', 'ß', '😀', '\u{202e}', '\u{ff0f}',
    ]);
    prop_oneof![
        "[a-z0-9]{0,8}",
        ".{0,12}",
        vec(awkward, 0..6).prop_map(|chars| chars.into_iter().collect()),
    ]
}

/// A password for a URI's userinfo: recognisable (so a message that repeats it is caught) and
/// full of characters that move URI delimiters around.
fn password() -> impl Strategy<Value = String> {
    (piece(), piece()).prop_map(|(a, b)| format!("S3cr{a}{b}9x"))
}

#[derive(Debug, Clone)]
struct GeneratedUri {
    text: String,
    /// The password written into the userinfo, if any.
    password: Option<String>,
}

/// URIs close to valid ones: every part present or not, each drawn from valid values, near
/// misses and garbage, including out-of-range ports and hosts of hundreds of characters.
fn near_valid_uri() -> impl Strategy<Value = GeneratedUri> {
    let scheme = prop_oneof![
        select(all_schemes()).prop_map(str::to_owned),
        select(vec![
            "BOLT",
            "Neo4j+S",
            "http",
            "https",
            "file",
            "bolt+x",
            "postgres+s",
            ""
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z][a-zA-Z0-9+.-]{0,12}",
        piece(),
    ];
    let separator = select(vec![
        "://", "://", "://", ":", ":/", ":///", "//", "", ":\\\\",
    ]);
    let userinfo = proptest::option::of((piece(), proptest::option::of(password())));
    let host = prop_oneof![
        select(vec![
            "127.0.0.1",
            "localhost",
            "db.example",
            "[::1]",
            "[fe80::1%25eth0]",
            "[::1",
            "256.256.256.256",
            "0x7f.1",
            "xn--nxasmq6b.example",
            "ünïcode.example",
            "",
        ])
        .prop_map(str::to_owned),
        "[a-z0-9-]{1,20}(\\.[a-z0-9-]{1,20}){0,3}",
        "[a-z]{60,300}",
        piece(),
    ];
    let port = proptest::option::of(prop_oneof![
        (0u32..=70_000).prop_map(|p| p.to_string()),
        "[0-9]{6,30}",
        piece(),
    ]);
    // More hosts after the first (`,h2:5433`), some with a login that must be refused.
    let more_hosts = proptest::option::of(vec(
        (
            proptest::option::of(password()),
            "[a-z0-9.-]{0,12}",
            proptest::option::of("[0-9]{1,6}"),
        ),
        1..3,
    ));
    let path = proptest::option::of(prop_oneof![
        Just("/".to_owned()),
        "/[a-zA-Z0-9._-]{0,70}",
        piece().prop_map(|p| format!("/{p}")),
    ]);
    let query_pair = (
        prop_oneof![
            select(vec![
                "sslmode",
                "target_session_attrs",
                "password",
                "user",
                ""
            ])
            .prop_map(str::to_owned),
            piece()
        ],
        prop_oneof![
            select(vec![
                "disable",
                "require",
                "verify-ca",
                "verify-full",
                "prefer",
                "allow",
                "on",
                "read-write",
                "prefer-standby",
                "master"
            ])
            .prop_map(str::to_owned),
            piece(),
        ],
    );
    let query = proptest::option::of(vec(query_pair, 0..3));
    let fragment = proptest::option::of(piece());
    (
        scheme, separator, userinfo, host, port, more_hosts, path, query, fragment,
    )
        .prop_map(
            |(scheme, separator, userinfo, host, port, more_hosts, path, query, fragment)| {
                let mut text = format!("{scheme}{separator}");
                let mut secret = None;
                if let Some((user, password)) = userinfo {
                    text.push_str(&user);
                    if let Some(password) = password {
                        text.push(':');
                        text.push_str(&password);
                        secret = Some(password);
                    }
                    text.push('@');
                }
                text.push_str(&host);
                if let Some(port) = port {
                    text.push(':');
                    text.push_str(&port);
                }
                for (login, host, port) in more_hosts.unwrap_or_default() {
                    text.push(',');
                    if let Some(password) = login {
                        text.push_str(&format!("u:{password}@"));
                        secret = Some(password);
                    }
                    text.push_str(&host);
                    if let Some(port) = port {
                        text.push(':');
                        text.push_str(&port);
                    }
                }
                text.push_str(path.as_deref().unwrap_or_default());
                if let Some(pairs) = query {
                    let pairs: Vec<String> =
                        pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    text.push('?');
                    text.push_str(&pairs.join("&"));
                }
                if let Some(fragment) = fragment {
                    text.push('#');
                    text.push_str(&fragment);
                }
                GeneratedUri {
                    text,
                    password: secret,
                }
            },
        )
}

/// Every registered engine's URI schemes.
fn all_schemes() -> Vec<&'static str> {
    ENGINES
        .iter()
        .flat_map(|e| e.uri.schemes.iter().copied())
        .collect()
}

/// What an accepted spec must satisfy, read back from the URI with the same URL parser.
fn accepted_uri_is_clean(engine: &str, settings: &ConnectionSettings) -> Result<(), TestCaseError> {
    // A list of hosts is read one host at a time; the first stands in for the URI.
    let listed = settings.uri.split_once("://").map(|(scheme, rest)| {
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let hosts: Vec<&str> = rest[..end].split(',').collect();
        (scheme, hosts, &rest[end..])
    });
    if let Some((scheme, hosts, tail)) = &listed
        && hosts.len() > 1
    {
        prop_assert!(
            engine::named(engine).unwrap().uri.several_hosts,
            "several hosts for {}",
            engine
        );
        prop_assert_eq!(settings.hosts.len(), hosts.len());
        for host in hosts {
            prop_assert!(
                !host.contains('@'),
                "accepted a login in listed host {}",
                host
            );
        }
        let first = format!("{scheme}://{}{tail}", hosts[0]);
        return accepted_uri_is_clean(
            engine,
            &ConnectionSettings {
                uri: first,
                ..settings.clone()
            },
        );
    }
    let url = Url::parse(&settings.uri)
        .map_err(|e| TestCaseError::fail(format!("accepted but unparseable: {e}")))?;
    prop_assert_eq!(url.username(), "", "accepted a user in the URI");
    prop_assert_eq!(url.password(), None, "accepted a password in the URI");
    prop_assert!(url.fragment().is_none(), "accepted a fragment");
    prop_assert!(!settings.host.is_empty(), "accepted an empty host");
    prop_assert_eq!(
        url.port().unwrap_or(settings.port),
        settings.port,
        "the port differs from the URI's"
    );
    let descriptor = engine::named(engine).expect("a registered engine");
    prop_assert!(
        descriptor.uri.schemes.contains(&url.scheme()),
        "scheme {} for engine {}",
        url.scheme(),
        engine
    );
    Ok(())
}

/// A URI the CRD's rule for `engine` admits must be one the operator can use: otherwise the
/// apiserver would store a connection that can only ever be `InvalidSpec`.
fn admitted_uri_is_accepted(engine: &str, uri: &str, accepted: bool) -> Result<(), TestCaseError> {
    let pattern = &engine::named(engine)
        .expect("a registered engine")
        .uri
        .pattern;
    let admitted = regex::Regex::new(pattern)
        .expect("the CRD pattern compiles")
        .is_match(uri);
    prop_assert!(
        !admitted || accepted,
        "the CRD admits {:?} for engine {}, the operator refuses it",
        uri,
        engine
    );
    Ok(())
}

#[test]
fn spec_uri_near_valid_uris_never_leak_or_pass_credentials() {
    let strategy = (select(engine::names()), near_valid_uri());
    check(
        "spec.uri: near-valid URIs",
        file!(),
        strategy,
        |(engine, uri)| {
            let parsed = ConnectionSettings::from_spec(&spec(engine, &uri.text, json!({})));
            admitted_uri_is_accepted(engine, &uri.text, parsed.is_ok())?;
            match parsed {
                Ok(settings) => {
                    prop_assert!(uri.password.is_none(), "accepted a URI with a password");
                    accepted_uri_is_clean(engine, &settings)?;
                }
                Err(error) => {
                    let message = error.to_string();
                    if let Some(password) = &uri.password {
                        prop_assert!(
                            !message.contains(password.as_str()),
                            "the message repeats the password: {}",
                            message
                        );
                    }
                }
            }
            Ok(())
        },
    );
}

/// Anything a user (or a client that bypasses the apiserver's checks) could store.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        vec(any::<u8>(), 0..200).prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
        ".{0,8}".prop_map(|s| s.repeat(2_000)),
    ]
}

fn any_duration() -> impl Strategy<Value = String> {
    prop_oneof![
        "([0-9]{1,4}(\\.[0-9]{1,3})?(ms|s|m|h)){1,3}",
        "[0-9.]{0,40}(ms|s|m|h|d|us|)",
        any_text(),
    ]
}

#[test]
fn spec_never_panics_on_arbitrary_uris_durations_and_tls() {
    let tls = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(|skip| json!({"insecureSkipVerify": skip})),
        any::<bool>()
            .prop_map(|skip| json!({"caSecretRef": {"name": "ca"}, "insecureSkipVerify": skip})),
    ];
    let strategy = (
        select(engine::names()),
        prop_oneof![any_text(), near_valid_uri().prop_map(|u| u.text)],
        tls,
        vec(any_duration(), 7),
        (0u32..5, 0u32..5, 0u32..5),
    );
    check(
        "spec: arbitrary uri, durations, tls",
        file!(),
        strategy,
        |(engine, uri, tls, durations, (max_size, fetch_size, threshold))| {
            let extra = json!({
                "tls": tls,
                "pool": {
                    "maxSize": max_size, "fetchSize": fetch_size,
                    "connectionTimeout": durations[0], "acquisitionTimeout": durations[1],
                    "maxLifetime": durations[2], "idleTimeout": durations[3],
                },
                "healthCheck": {"interval": durations[4], "timeout": durations[5], "failureThreshold": threshold},
                "retry": {"initialDelay": durations[6], "maxDelay": durations[6]},
            });
            match ConnectionSettings::from_spec(&spec(engine, &uri, extra)) {
                Ok(settings) => accepted_uri_is_clean(engine, &settings)?,
                Err(error) => prop_assert!(!error.to_string().is_empty()),
            }
            Ok(())
        },
    );
}

const UNITS: [(&str, u128); 4] = [
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

#[test]
fn duration_parse_never_panics() {
    let strategy = prop_oneof![
        any_duration(),
        "([0-9.]{0,25}[a-z]{0,3}){1,6}",
        "[0-9]{15,40}(\\.[0-9]{0,40})?(ms|s|m|h)",
    ];
    check("duration: never panics", file!(), strategy, |text| {
        if let Err(error) = duration::parse(&text) {
            prop_assert!(error.to_string().contains("is not a duration"));
        }
        Ok(())
    });
}

/// Parts like `1h`, `30m`, `1.5s`, `250ms` as people write them: whole units with up to three
/// decimals (exact in nanoseconds for every unit), summed exactly.
#[test]
fn duration_round_trips_where_valid() {
    let part = (
        0u64..=1_000_000,
        proptest::option::of("[0-9]{1,3}"),
        0..UNITS.len(),
    );
    check("duration: round trip", file!(), vec(part, 1..5), |parts| {
        let mut text = String::new();
        let mut nanos: u128 = 0;
        for (whole, fraction, unit) in &parts {
            let (suffix, unit_nanos) = UNITS[*unit];
            text.push_str(&whole.to_string());
            nanos += u128::from(*whole) * unit_nanos;
            if let Some(digits) = fraction {
                text.push('.');
                text.push_str(digits);
                let scale = 10u128.pow(digits.len() as u32);
                nanos += digits.parse::<u128>().unwrap() * unit_nanos / scale;
            }
            text.push_str(suffix);
        }
        let expected = Duration::from_nanos(u64::try_from(nanos).unwrap());
        prop_assert_eq!(duration::parse(&text), Ok(expected), "{}", text);
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Identifier quoting

/// Reads a statement as Neo4j 5's Cypher parser does and returns its text outside quotes (each
/// quoted identifier replaced by `§`) and the identifiers.
///
/// The parser first decodes `\uXXXX` escapes anywhere in the text, inside backticks too (as
/// Java source does): a backslash starts one only after an even number of backslashes, it must
/// be followed by `u` and four hex digits or the statement fails, and a decoded character
/// starts nothing. Then a backtick opens an identifier, a doubled one inside stands for one
/// backtick and a single one closes it. Checked on Neo4j 5.26 by tests/quoting_servers.rs.
fn lex_cypher(statement: &str) -> Result<(String, Vec<String>), String> {
    let raw: Vec<char> = statement.chars().collect();
    let mut decoded = Vec::with_capacity(raw.len());
    let (mut i, mut backslashes) = (0, 0);
    while i < raw.len() {
        let c = raw[i];
        if c == '\\' && backslashes % 2 == 0 && raw.get(i + 1) == Some(&'u') {
            let hex: String = raw.get(i + 2..i + 6).unwrap_or_default().iter().collect();
            let unit = Some(&hex)
                .filter(|h| h.len() == 4 && h.chars().all(|d| d.is_ascii_hexdigit()))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("invalid unicode escape in {statement:?}"))?;
            decoded.push(char::from_u32(unit).ok_or("a lone surrogate escape")?);
            i += 6;
            backslashes = 0;
            continue;
        }
        backslashes = if c == '\\' { backslashes + 1 } else { 0 };
        decoded.push(c);
        i += 1;
    }
    split_delimited(decoded.into_iter(), '`', statement)
}

/// Reads a statement as PostgreSQL's lexer reads delimited identifiers: a double quote opens
/// one, a doubled one inside stands for one double quote and a single one closes it; no other
/// escape exists inside (`U&"..."` needs the prefix, which the statements never have).
fn lex_sql(statement: &str) -> Result<(String, Vec<String>), String> {
    split_delimited(statement.chars(), '"', statement)
}

/// Splits `chars` into the text outside identifiers delimited by `quote` (each replaced by `§`)
/// and the identifiers themselves, a doubled `quote` inside standing for one. Fails on an
/// identifier left open; `statement` is for that message.
fn split_delimited(
    chars: impl Iterator<Item = char>,
    quote: char,
    statement: &str,
) -> Result<(String, Vec<String>), String> {
    let (mut outside, mut identifiers) = (String::new(), Vec::new());
    let mut chars = chars.peekable();
    while let Some(c) = chars.next() {
        if c != quote {
            outside.push(c);
            continue;
        }
        let mut identifier = String::new();
        loop {
            match chars.next() {
                Some(c) if c == quote && chars.peek() == Some(&quote) => {
                    chars.next();
                    identifier.push(quote);
                }
                Some(c) if c == quote => break,
                Some(other) => identifier.push(other),
                None => return Err(format!("unterminated identifier in {statement:?}")),
            }
        }
        outside.push('§');
        identifiers.push(identifier);
    }
    Ok((outside, identifiers))
}

const KINDS: [Kind; 7] = [
    Kind::Constraint(ConstraintType::Unique),
    Kind::Constraint(ConstraintType::NodeKey),
    Kind::Constraint(ConstraintType::NotNull),
    Kind::Index(IndexType::Range),
    Kind::Index(IndexType::Text),
    Kind::Index(IndexType::Point),
    Kind::Index(IndexType::Fulltext),
];

#[test]
fn cypher_statements_keep_any_identifier_inside_its_quotes() {
    let strategy = (
        0..KINDS.len(),
        any::<bool>(),
        hostile_identifier(),
        hostile_identifier(),
        vec(hostile_identifier(), 1..4),
    );
    check(
        "cypher: identifier quoting",
        file!(),
        strategy,
        |(kind, on_label, name, target, properties)| {
            let target_of = |t: String| {
                if on_label {
                    Target::Label(t)
                } else {
                    Target::RelationshipType(t)
                }
            };
            // The same statement with harmless names gives the structure to expect.
            let harmless = Declared {
                name: "n".into(),
                kind: KINDS[kind],
                target: target_of("t".into()),
                properties: vec!["p".into(); properties.len()],
            };
            let (skeleton, _) = lex_cypher(&harmless.create_statement()).unwrap();
            let mut expected = vec![name.clone(), target.clone()];
            expected.extend(properties.iter().cloned());
            let item = Declared {
                name: name.clone(),
                kind: KINDS[kind],
                target: target_of(target),
                properties,
            };
            let statement = item.create_statement();
            let lexed = lex_cypher(&statement).map_err(TestCaseError::fail)?;
            prop_assert_eq!(lexed, (skeleton, expected), "{}", statement);

            let existing = Existing {
                name: name.clone(),
                is_constraint: kind < 3,
                type_: String::new(),
                entity: String::new(),
                labels_or_types: Vec::new(),
                properties: Vec::new(),
                state: String::new(),
                population_percent: 0.0,
            };
            let what = if kind < 3 { "CONSTRAINT" } else { "INDEX" };
            let lexed = lex_cypher(&drop_statement(&existing)).map_err(TestCaseError::fail)?;
            prop_assert_eq!(
                lexed,
                (format!("DROP {what} § IF EXISTS"), vec![name.clone()])
            );

            // And on its own, between arbitrary neighbours.
            let lexed = lex_cypher(&format!("MATCH (e:{}) RETURN e", quote(&name)))
                .map_err(TestCaseError::fail)?;
            prop_assert_eq!(lexed, ("MATCH (e:§) RETURN e".to_owned(), vec![name]));
            Ok(())
        },
    );
}

#[test]
fn sql_extension_statements_keep_any_identifier_inside_its_quotes() {
    check(
        "sql: identifier quoting",
        file!(),
        hostile_identifier(),
        |name| {
            // The statement `ExtensionOps::install` sends.
            let statement = format!("CREATE EXTENSION IF NOT EXISTS {}", quote_identifier(&name));
            let lexed = lex_sql(&statement).map_err(TestCaseError::fail)?;
            prop_assert_eq!(
                lexed,
                (
                    "CREATE EXTENSION IF NOT EXISTS §".to_owned(),
                    vec![name.clone()]
                ),
                "{}",
                statement
            );
            let lexed = lex_sql(&format!("SELECT {} FROM t", quote_identifier(&name)))
                .map_err(TestCaseError::fail)?;
            prop_assert_eq!(lexed, ("SELECT § FROM t".to_owned(), vec![name]));
            Ok(())
        },
    );
}

/// The lexers themselves: a property over a lexer that accepts everything would prove nothing.
#[test]
fn the_lexers_see_a_quote_break_out() {
    let broken = "CREATE INDEX `a` ON (e.`x`) // `";
    assert!(lex_cypher(broken).is_err());
    let (outside, identifiers) = lex_cypher("RETURN 1 AS `x\\u0060, 2 AS `y`").unwrap();
    assert_eq!(
        (outside.as_str(), identifiers.len()),
        ("RETURN 1 AS §, 2 AS §", 2),
        "a decoded escape closes the identifier"
    );
    assert!(lex_cypher("RETURN `\\u00zz`").is_err());
    assert_eq!(
        lex_cypher("RETURN `a\\\\u0060b`").unwrap().1,
        ["a\\\\u0060b"],
        "an escaped backslash does not start an escape"
    );
    let (outside, identifiers) = lex_sql("SELECT \"a\"\"b\" FROM \"t\"").unwrap();
    assert_eq!(
        (outside.as_str(), identifiers.len()),
        ("SELECT § FROM §", 2)
    );
    assert!(lex_sql("SELECT \"a").is_err());
    report::record(
        "fuzz",
        "lexers catch a break-out",
        "passed",
        "4 fixed cases",
    );
}
