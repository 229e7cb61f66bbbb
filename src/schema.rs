//! Declarative Neo4j schema, without I/O: safe identifier quoting, the Cypher each declared
//! constraint or index becomes, and the plan that brings the server in line with the manifest.
//! Statements are built from structured fields only; no user text is ever spliced in unquoted.

use std::collections::BTreeSet;

use crate::api::{ConstraintSpec, ConstraintType, IndexSpec, IndexType, SchemaSpec};

/// Quotes a Cypher identifier: wrapped in backticks, embedded backticks doubled, and each
/// backslash written as the escape `\u005C`. Neo4j 5 decodes `\uXXXX` escapes anywhere in a
/// statement before it reads quotes, so a raw `\u0060` in a name would close them; an escaped
/// backslash decodes to itself and starts nothing. Whatever the input, the result is one
/// identifier token that names exactly the input.
pub fn quote(identifier: &str) -> String {
    format!(
        "`{}`",
        identifier.replace('`', "``").replace('\\', "\\u005C")
    )
}

/// The identifier rule the CRD also enforces: a letter or underscore, then letters, digits or
/// underscores; at most 128 characters. Checked again here for objects sent past the apiserver.
pub fn valid_identifier(identifier: &str) -> bool {
    let mut chars = identifier.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && identifier.len() <= 128
}

/// Node label or relationship type that a schema item applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Label(String),
    RelationshipType(String),
}

impl Target {
    fn of(label: &Option<String>, relationship_type: &Option<String>) -> Result<Self, String> {
        match (label, relationship_type) {
            (Some(l), None) => Ok(Target::Label(l.clone())),
            (None, Some(t)) => Ok(Target::RelationshipType(t.clone())),
            _ => Err("set exactly one of label and relationshipType".into()),
        }
    }

    fn pattern(&self) -> String {
        match self {
            Target::Label(l) => format!("(e:{})", quote(l)),
            Target::RelationshipType(t) => format!("()-[e:{}]-()", quote(t)),
        }
    }

    fn entity(&self) -> &'static str {
        match self {
            Target::Label(_) => "NODE",
            Target::RelationshipType(_) => "RELATIONSHIP",
        }
    }

    fn name(&self) -> &str {
        match self {
            Target::Label(n) | Target::RelationshipType(n) => n,
        }
    }
}

/// One declared schema item, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Declared {
    pub name: String,
    pub kind: Kind,
    pub target: Target,
    pub properties: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Constraint(ConstraintType),
    Index(IndexType),
}

impl Kind {
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Constraint(_) => "constraint",
            Kind::Index(_) => "index",
        }
    }

    /// NODE KEY and property existence constraints exist only in Neo4j Enterprise.
    pub fn needs_enterprise(self) -> bool {
        matches!(
            self,
            Kind::Constraint(ConstraintType::NodeKey | ConstraintType::NotNull)
        )
    }
}

impl Declared {
    /// The statement that creates this item. Deliberately without `IF NOT EXISTS`: when it
    /// fails because the item already exists, someone else created it (another connection on
    /// the same database, or a person), and the operator must not claim it.
    pub fn create_statement(&self) -> String {
        let name = quote(&self.name);
        let pattern = self.target.pattern();
        let props: Vec<String> = self
            .properties
            .iter()
            .map(|p| format!("e.{}", quote(p)))
            .collect();
        let list = props.join(", ");
        match self.kind {
            Kind::Constraint(t) => {
                let requirement = match (t, &self.target) {
                    (ConstraintType::Unique, _) => format!("({list}) IS UNIQUE"),
                    (ConstraintType::NodeKey, Target::Label(_)) => format!("({list}) IS NODE KEY"),
                    (ConstraintType::NodeKey, Target::RelationshipType(_)) => {
                        format!("({list}) IS RELATIONSHIP KEY")
                    }
                    (ConstraintType::NotNull, _) => format!("{list} IS NOT NULL"),
                };
                format!("CREATE CONSTRAINT {name} FOR {pattern} REQUIRE {requirement}")
            }
            Kind::Index(IndexType::Fulltext) => {
                format!("CREATE FULLTEXT INDEX {name} FOR {pattern} ON EACH [{list}]")
            }
            Kind::Index(t) => {
                let keyword = match t {
                    IndexType::Range => "RANGE",
                    IndexType::Text => "TEXT",
                    IndexType::Point => "POINT",
                    IndexType::Fulltext => unreachable!("handled above"),
                };
                format!("CREATE {keyword} INDEX {name} FOR {pattern} ON ({list})")
            }
        }
    }

    /// The type name `SHOW CONSTRAINTS` / `SHOW INDEXES` reports for this item.
    fn server_type(&self) -> &'static str {
        let node = matches!(self.target, Target::Label(_));
        match self.kind {
            Kind::Constraint(ConstraintType::Unique) if node => "UNIQUENESS",
            Kind::Constraint(ConstraintType::Unique) => "RELATIONSHIP_UNIQUENESS",
            Kind::Constraint(ConstraintType::NodeKey) if node => "NODE_KEY",
            Kind::Constraint(ConstraintType::NodeKey) => "RELATIONSHIP_KEY",
            Kind::Constraint(ConstraintType::NotNull) if node => "NODE_PROPERTY_EXISTENCE",
            Kind::Constraint(ConstraintType::NotNull) => "RELATIONSHIP_PROPERTY_EXISTENCE",
            Kind::Index(IndexType::Range) => "RANGE",
            Kind::Index(IndexType::Text) => "TEXT",
            Kind::Index(IndexType::Point) => "POINT",
            Kind::Index(IndexType::Fulltext) => "FULLTEXT",
        }
    }

    /// Whether `found` is what an interrupted creation of this constraint leaves behind: Neo4j
    /// builds a unique or key constraint's index, under the constraint's name, before the
    /// constraint itself, so a crash in between leaves that RANGE index on its own.
    fn remnant(&self, found: &Existing) -> bool {
        matches!(
            self.kind,
            Kind::Constraint(ConstraintType::Unique | ConstraintType::NodeKey)
        ) && !found.is_constraint
            && found.type_ == "RANGE"
            && found.entity == self.target.entity()
            && found.labels_or_types == [self.target.name()]
            && found.properties == self.properties
    }

    /// How `actual` differs from this declaration, if it does.
    fn difference(&self, actual: &Existing) -> Option<String> {
        let expected = (
            self.server_type(),
            self.target.entity(),
            vec![self.target.name().to_owned()],
            &self.properties,
        );
        let found = (
            actual.type_.as_str(),
            actual.entity.as_str(),
            actual.labels_or_types.clone(),
            &actual.properties,
        );
        (expected != found).then(|| {
            format!(
                "{} {:?} on the server is {} {:?}{:?}, the manifest declares {} {:?}{:?}",
                self.kind.noun(),
                self.name,
                found.0,
                found.2,
                found.3,
                expected.0,
                expected.2,
                expected.3
            )
        })
    }
}

/// A constraint or index as `SHOW CONSTRAINTS` / `SHOW INDEXES` lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct Existing {
    pub name: String,
    pub is_constraint: bool,
    pub type_: String,
    pub entity: String,
    pub labels_or_types: Vec<String>,
    pub properties: Vec<String>,
    /// Index state (`ONLINE`, `POPULATING`, `FAILED`); `ONLINE` for constraints.
    pub state: String,
    pub population_percent: f64,
}

/// Validates the manifest's schema section into declared items.
pub fn declared(spec: &SchemaSpec) -> Result<Vec<Declared>, String> {
    let constraints = spec.constraints.iter().map(|c: &ConstraintSpec| {
        (
            c.name.clone(),
            Kind::Constraint(c.type_),
            Target::of(&c.label, &c.relationship_type),
            c.properties.clone(),
        )
    });
    let indexes = spec.indexes.iter().map(|i: &IndexSpec| {
        (
            i.name.clone(),
            Kind::Index(i.type_),
            Target::of(&i.label, &i.relationship_type),
            i.properties.clone(),
        )
    });
    let mut seen = BTreeSet::new();
    let mut items = Vec::new();
    for (name, kind, target, properties) in constraints.chain(indexes) {
        let context = |problem: String| format!("spec.schema {} {name:?}: {problem}", kind.noun());
        let target = target.map_err(context)?;
        for identifier in std::iter::once(&name)
            .chain(std::iter::once(&target.name().to_owned()))
            .chain(&properties)
        {
            if !valid_identifier(identifier) {
                return Err(context(format!(
                    "{identifier:?} is not a safe identifier (letters, digits and _, not starting with a digit, at most 128 characters)"
                )));
            }
        }
        if properties.is_empty() {
            return Err(context("needs at least one property".into()));
        }
        let single = matches!(
            kind,
            Kind::Constraint(ConstraintType::NotNull)
                | Kind::Index(IndexType::Text | IndexType::Point)
        );
        if single && properties.len() != 1 {
            return Err(context("takes exactly one property".into()));
        }
        if !seen.insert(name.clone()) {
            return Err(context(
                "the name is used twice; constraint and index names share one namespace".into(),
            ));
        }
        items.push(Declared {
            name,
            kind,
            target,
            properties,
        });
    }
    Ok(items)
}

/// What to do and what to report, from the declared items, what the server has, and which
/// items the operator created earlier (the only ones it may ever drop).
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Indexes left by an interrupted creation of an owned constraint: dropped before the
    /// constraint is created again.
    pub remnants: Vec<Existing>,
    pub create: Vec<Declared>,
    /// Owned items no longer declared, dropped because `prune` is on.
    pub drop: Vec<Existing>,
    /// Owned items no longer declared, kept because `prune` is off.
    pub extra: Vec<String>,
    /// Owned items no longer declared here but declared by another DatabaseConnection on the
    /// same database: kept, whatever `prune` says, so their guarantee never lapses.
    pub shared: Vec<String>,
    /// Same name, different definition: reported, never changed behind the user's back.
    pub differing: Vec<(String, String)>,
    /// Declared items that need Enterprise on a Community server.
    pub enterprise_only: Vec<String>,
    /// Indexes still populating, with their progress.
    pub populating: Vec<(String, f64)>,
    /// Indexes the server marks FAILED.
    pub failed: Vec<String>,
}

pub fn plan(
    declared: &[Declared],
    existing: &[Existing],
    owned: &BTreeSet<String>,
    declared_elsewhere: &BTreeSet<String>,
    prune: bool,
    community: bool,
) -> Plan {
    let mut plan = Plan::default();
    for item in declared {
        match existing.iter().find(|e| e.name == item.name) {
            None if community && item.kind.needs_enterprise() => {
                plan.enterprise_only.push(item.name.clone())
            }
            None => plan.create.push(item.clone()),
            Some(found) if owned.contains(&item.name) && item.remnant(found) => {
                plan.remnants.push(found.clone());
                plan.create.push(item.clone());
            }
            Some(found) => {
                if let Some(difference) = item.difference(found) {
                    plan.differing.push((item.name.clone(), difference));
                } else if found.state == "POPULATING" {
                    plan.populating
                        .push((item.name.clone(), found.population_percent));
                } else if found.state == "FAILED" {
                    plan.failed.push(item.name.clone());
                }
            }
        }
    }
    for name in owned
        .iter()
        .filter(|n| !declared.iter().any(|d| &d.name == *n))
    {
        match existing.iter().find(|e| &e.name == name) {
            Some(_) if declared_elsewhere.contains(name) => plan.shared.push(name.clone()),
            Some(found) if prune => plan.drop.push(found.clone()),
            Some(_) => plan.extra.push(name.clone()),
            None => {}
        }
    }
    plan
}

/// The statement that drops an item the operator created.
pub fn drop_statement(item: &Existing) -> String {
    let what = if item.is_constraint {
        "CONSTRAINT"
    } else {
        "INDEX"
    };
    format!("DROP {what} {} IF EXISTS", quote(&item.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn constraint(name: &str, label: &str, props: &[&str], t: ConstraintType) -> ConstraintSpec {
        ConstraintSpec {
            name: name.into(),
            label: Some(label.into()),
            relationship_type: None,
            properties: props.iter().map(|p| p.to_string()).collect(),
            type_: t,
        }
    }

    fn index(name: &str, label: &str, props: &[&str], t: IndexType) -> IndexSpec {
        IndexSpec {
            name: name.into(),
            label: Some(label.into()),
            relationship_type: None,
            properties: props.iter().map(|p| p.to_string()).collect(),
            type_: t,
        }
    }

    fn spec(constraints: Vec<ConstraintSpec>, indexes: Vec<IndexSpec>) -> SchemaSpec {
        SchemaSpec {
            constraints,
            indexes,
            ..Default::default()
        }
    }

    /// Splits a statement into its unquoted text and its quoted identifiers, the way Cypher's
    /// lexer reads backticks. Fails if a backtick is left open.
    fn lex(statement: &str) -> (String, Vec<String>) {
        let (mut outside, mut identifiers) = (String::new(), Vec::new());
        let mut chars = statement.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '`' {
                outside.push(c);
                continue;
            }
            let mut identifier = String::new();
            loop {
                match chars.next() {
                    Some('`') if chars.peek() == Some(&'`') => {
                        chars.next();
                        identifier.push('`');
                    }
                    Some('`') => break,
                    Some(other) => identifier.push(other),
                    None => panic!("unterminated identifier in {statement:?}"),
                }
            }
            outside.push('§');
            identifiers.push(identifier);
        }
        (outside, identifiers)
    }

    #[test]
    fn quoting_doubles_backticks() {
        assert_eq!(quote("poi"), "`poi`");
        assert_eq!(quote("a`b"), "`a``b`");
    }

    #[test]
    fn quoting_escapes_backslashes_so_no_unicode_escape_closes_the_quotes() {
        // Found by tests/fuzz_parsing.rs and checked on Neo4j 5.26: `RETURN 1 AS `x\u0060, 2
        // AS `y`` returns two columns, x and y. Written as `\u005C`, a backslash stays one.
        assert_eq!(
            quote("x\\u0060) DELETE n //"),
            "`x\\u005Cu0060) DELETE n //`"
        );
        assert_eq!(quote("a\\\\b"), "`a\\u005C\\u005Cb`");
    }

    #[test]
    fn statements_for_each_type() {
        let items = declared(&spec(
            vec![
                constraint("poi_id", "POI", &["id"], ConstraintType::Unique),
                constraint("poi_key", "POI", &["a", "b"], ConstraintType::NodeKey),
                constraint("poi_name", "POI", &["name"], ConstraintType::NotNull),
            ],
            vec![
                index("poi_city", "POI", &["city", "zip"], IndexType::Range),
                index("poi_text", "POI", &["name"], IndexType::Text),
                index("poi_loc", "POI", &["location"], IndexType::Point),
                index(
                    "poi_search",
                    "POI",
                    &["name", "description"],
                    IndexType::Fulltext,
                ),
            ],
        ))
        .unwrap();
        let statements: Vec<_> = items.iter().map(Declared::create_statement).collect();
        assert_eq!(
            statements,
            [
                "CREATE CONSTRAINT `poi_id` FOR (e:`POI`) REQUIRE (e.`id`) IS UNIQUE",
                "CREATE CONSTRAINT `poi_key` FOR (e:`POI`) REQUIRE (e.`a`, e.`b`) IS NODE KEY",
                "CREATE CONSTRAINT `poi_name` FOR (e:`POI`) REQUIRE e.`name` IS NOT NULL",
                "CREATE RANGE INDEX `poi_city` FOR (e:`POI`) ON (e.`city`, e.`zip`)",
                "CREATE TEXT INDEX `poi_text` FOR (e:`POI`) ON (e.`name`)",
                "CREATE POINT INDEX `poi_loc` FOR (e:`POI`) ON (e.`location`)",
                "CREATE FULLTEXT INDEX `poi_search` FOR (e:`POI`) ON EACH [e.`name`, e.`description`]",
            ]
        );
    }

    #[test]
    fn relationship_items_use_a_relationship_pattern() {
        let mut c = constraint("r_id", "X", &["id"], ConstraintType::Unique);
        c.label = None;
        c.relationship_type = Some("KNOWS".into());
        let items = declared(&spec(vec![c], vec![])).unwrap();
        assert_eq!(
            items[0].create_statement(),
            "CREATE CONSTRAINT `r_id` FOR ()-[e:`KNOWS`]-() REQUIRE (e.`id`) IS UNIQUE"
        );
    }

    #[test]
    fn hostile_identifiers_are_rejected_by_validation() {
        let hostile = [
            "a`b",
            "x}) DETACH DELETE n //",
            "name\nMATCH (n) DELETE n",
            "1abc",
            "",
            "ünïcode",
            "a b",
            &"x".repeat(129),
        ];
        for bad in hostile {
            let as_name = spec(
                vec![constraint(bad, "POI", &["id"], ConstraintType::Unique)],
                vec![],
            );
            let as_label = spec(vec![], vec![index("ok", bad, &["id"], IndexType::Range)]);
            let as_property = spec(vec![], vec![index("ok", "POI", &[bad], IndexType::Range)]);
            for s in [as_name, as_label, as_property] {
                let error = declared(&s).unwrap_err();
                assert!(error.contains("not a safe identifier"), "{bad:?}: {error}");
            }
        }
    }

    #[test]
    fn quoting_alone_keeps_hostile_identifiers_inside_one_token() {
        // Past validation (e.g. a bug there), quoting must still hold: the statement's unquoted
        // skeleton is the same as with harmless names, and each identifier comes back intact.
        let hostile = [
            "a`b",
            "x`) DETACH DELETE n //",
            "}]->() CALL dbms.killQueries() //",
            "l\n; DROP DATABASE neo4j",
            "``",
            "ünï`code",
        ];
        let template = Declared {
            name: "n".into(),
            kind: Kind::Constraint(ConstraintType::Unique),
            target: Target::Label("L".into()),
            properties: vec!["p".into()],
        };
        let (skeleton, _) = lex(&template.create_statement());
        for bad in hostile {
            let item = Declared {
                name: bad.into(),
                target: Target::Label(bad.into()),
                properties: vec![bad.into()],
                ..template.clone()
            };
            let (outside, identifiers) = lex(&item.create_statement());
            assert_eq!(
                outside, skeleton,
                "{bad:?} changed the statement's structure"
            );
            assert_eq!(identifiers, [bad, bad, bad]);
        }
    }

    #[test]
    fn duplicate_names_and_wrong_property_counts_are_rejected() {
        let dup = spec(
            vec![constraint("same", "POI", &["id"], ConstraintType::Unique)],
            vec![index("same", "POI", &["id"], IndexType::Range)],
        );
        assert!(declared(&dup).unwrap_err().contains("used twice"));
        let text = spec(
            vec![],
            vec![index("t", "POI", &["a", "b"], IndexType::Text)],
        );
        assert!(
            declared(&text)
                .unwrap_err()
                .contains("exactly one property")
        );
    }

    fn existing(
        name: &str,
        constraint: bool,
        type_: &str,
        label: &str,
        props: &[&str],
    ) -> Existing {
        Existing {
            name: name.into(),
            is_constraint: constraint,
            type_: type_.into(),
            entity: "NODE".into(),
            labels_or_types: vec![label.into()],
            properties: props.iter().map(|p| p.to_string()).collect(),
            state: "ONLINE".into(),
            population_percent: 100.0,
        }
    }

    #[test]
    fn plan_creates_missing_and_reports_differing_items() {
        let items = declared(&spec(
            vec![constraint("poi_id", "POI", &["id"], ConstraintType::Unique)],
            vec![index("poi_city", "POI", &["city"], IndexType::Range)],
        ))
        .unwrap();
        let server = [existing("poi_city", false, "RANGE", "POI", &["town"])];
        let plan = plan(
            &items,
            &server,
            &BTreeSet::new(),
            &BTreeSet::new(),
            false,
            true,
        );
        assert_eq!(
            plan.create
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>(),
            ["poi_id"]
        );
        assert_eq!(plan.differing.len(), 1);
        assert!(
            plan.differing[0].1.contains("town"),
            "{}",
            plan.differing[0].1
        );
    }

    #[test]
    fn plan_prunes_only_owned_items_and_only_with_prune() {
        let server = [
            existing("old_owned", false, "RANGE", "POI", &["x"]),
            existing("by_hand", false, "RANGE", "POI", &["y"]),
        ];
        let owned: BTreeSet<String> = ["old_owned".to_string()].into();
        let kept = plan(&[], &server, &owned, &BTreeSet::new(), false, true);
        assert_eq!(kept.extra, ["old_owned"]);
        assert!(kept.drop.is_empty());
        let pruned = plan(&[], &server, &owned, &BTreeSet::new(), true, true);
        assert_eq!(
            pruned
                .drop
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>(),
            ["old_owned"]
        );
        assert_eq!(
            drop_statement(&pruned.drop[0]),
            "DROP INDEX `old_owned` IF EXISTS"
        );
    }

    #[test]
    fn prune_keeps_what_another_connection_still_declares() {
        let server = [existing("shared_id", true, "UNIQUENESS", "POI", &["id"])];
        let owned: BTreeSet<String> = ["shared_id".to_string()].into();
        let elsewhere: BTreeSet<String> = ["shared_id".to_string()].into();
        let plan = plan(&[], &server, &owned, &elsewhere, true, true);
        assert!(
            plan.drop.is_empty(),
            "never dropped while declared elsewhere"
        );
        assert!(plan.extra.is_empty(), "and not drift: it is declared");
        assert_eq!(plan.shared, ["shared_id"]);
    }

    #[test]
    fn enterprise_only_constraints_are_not_attempted_on_community() {
        let items = declared(&spec(
            vec![constraint("k", "POI", &["id"], ConstraintType::NodeKey)],
            vec![],
        ))
        .unwrap();
        let community = plan(&items, &[], &BTreeSet::new(), &BTreeSet::new(), false, true);
        assert_eq!(community.enterprise_only, ["k"]);
        assert!(community.create.is_empty());
        let enterprise = plan(
            &items,
            &[],
            &BTreeSet::new(),
            &BTreeSet::new(),
            false,
            false,
        );
        assert_eq!(enterprise.create.len(), 1);
    }

    #[test]
    fn populating_indexes_are_reported_with_progress() {
        let items = declared(&spec(
            vec![],
            vec![index("i", "POI", &["a"], IndexType::Range)],
        ))
        .unwrap();
        let mut server = existing("i", false, "RANGE", "POI", &["a"]);
        server.state = "POPULATING".into();
        server.population_percent = 42.5;
        assert_eq!(
            plan(
                &items,
                &[server],
                &BTreeSet::new(),
                &BTreeSet::new(),
                false,
                true
            )
            .populating,
            [("i".to_string(), 42.5)]
        );
    }
}
