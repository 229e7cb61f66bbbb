//! Multi-document YAML as a GitOps repository holds it: each document's text and first line,
//! its parsed value, and the line a field path points at, so problems read `file:line`.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{MessageFormatter, Spanned, UserMessageFormatter};

/// One document of a YAML stream.
#[derive(Debug)]
pub struct Document {
    /// 1-based line of the document's first line in the file.
    pub start_line: usize,
    pub text: String,
}

impl Document {
    /// The document as JSON, the form the apiserver validates; `Ok(None)` for an empty document.
    pub fn parse(&self) -> Result<Option<serde_json::Value>, (usize, String)> {
        match serde_saphyr::from_str::<Option<serde_json::Value>>(&self.text) {
            Ok(value) => Ok(value.filter(|v| !v.is_null())),
            Err(error) => {
                let line = error.location().map_or(0, |l| l.line().saturating_sub(1));
                let line = usize::try_from(line).unwrap_or(0);
                // The user-facing text without snippet or location: the report prints
                // `file:line` itself, and a location here would count from the document's start.
                let message = UserMessageFormatter.format_message(error.without_snippet());
                let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
                Err((self.start_line + line, message))
            }
        }
    }

    /// The line of `path` (as `spec.schema.constraints[1].name`), or of the deepest part of it
    /// found; the document's first line when nothing matches. Lines come from the parser's
    /// spans, so flow style (`spec: {uri: x}`) is located as well as block style.
    pub fn line_of(&self, path: &str) -> usize {
        // Parsed again only here: most documents have no problem to locate.
        let Ok(root) = serde_saphyr::from_str::<Spanned<Node>>(&self.text) else {
            return self.start_line;
        };
        let mut node = &root;
        let mut found = None;
        for segment in segments(path) {
            let hit = match (segment, &node.value) {
                (Segment::Key(key), Node::Map(entries)) => entries
                    .iter()
                    .find(|(k, _)| k.value.0.as_deref() == Some(key))
                    .map(|(k, v)| (line(k), v)),
                (Segment::Index(index), Node::Seq(items)) => {
                    items.get(index).map(|item| (line(item), item))
                }
                _ => None,
            };
            let Some((at, inner)) = hit else { break };
            found = Some(at);
            node = inner;
        }
        self.start_line + found.unwrap_or_else(|| line(&root))
    }
}

/// 0-based line of a node within its document.
fn line<T>(node: &Spanned<T>) -> usize {
    usize::try_from(node.referenced.line().saturating_sub(1)).unwrap_or(0)
}

/// The shape of a document with the place of each key and item, all `line_of` needs.
enum Node {
    Map(Vec<(Spanned<Key>, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Scalar,
}

/// A mapping key as text; `None` for a key that is not a scalar.
struct Key(Option<String>);

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Key>>()? {
            entries.push((key, map.next_value()?));
        }
        Ok(Node::Map(entries))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_i128<E>(self, _: i128) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_u128<E>(self, _: u128) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_str<E>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Scalars as the text a field path spells them with; anything else matches no path.
        Ok(Key(match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::String(text) => Some(text),
            serde_json::Value::Array(_) | serde_json::Value::Object(_) => None,
            other => Some(other.to_string()),
        }))
    }
}

/// Splits a stream at its `---` markers. A comment-only preamble before the first marker is
/// not a document, as in YAML itself.
pub fn split(text: &str) -> Vec<Document> {
    let mut documents = Vec::new();
    let mut current = Document {
        start_line: 1,
        text: String::new(),
    };
    let mut opened_by_marker = false;
    for (index, line) in text.lines().enumerate() {
        let marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if marker {
            if opened_by_marker || has_content(&current.text) {
                documents.push(current);
            }
            opened_by_marker = true;
            current = Document {
                start_line: index + 2,
                // A value after the marker (`--- {}`) belongs to the document.
                text: String::new(),
            };
            let rest = line[3..].trim();
            if !rest.is_empty() {
                current.start_line = index + 1;
                current.text.push_str(rest);
                current.text.push('\n');
            }
            continue;
        }
        if line == "..." {
            continue;
        }
        current.text.push_str(line);
        current.text.push('\n');
    }
    if opened_by_marker || has_content(&current.text) {
        documents.push(current);
    }
    documents
}

fn has_content(text: &str) -> bool {
    text.lines().any(is_content)
}

fn is_content(line: &str) -> bool {
    let trimmed = line.trim_start();
    !trimmed.is_empty() && !trimmed.starts_with('#')
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// `a.b[2].c` into keys and indexes.
fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            out.push(Segment::Key(key));
        }
        while let Some((index, after)) = rest.split_once(']') {
            if let Ok(index) = index.parse() {
                out.push(Segment::Index(index));
            }
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "# preamble comment\n---\napiVersion: v1\nkind: Secret\n---\n\n---\napiVersion: dbconn.dev/v1alpha1\nkind: DatabaseConnection\nmetadata:\n  name: graph\nspec:\n  uri: bolt://db\n  schema:\n    constraints:\n    - name: a\n      label: A\n    - name: b\n      properties:\n        - x\n        - y\n    indexes: []\n  pool:\n    maxSize: 0\n";

    #[test]
    fn splits_at_markers_with_first_lines() {
        let docs = split(STREAM);
        let starts: Vec<_> = docs.iter().map(|d| d.start_line).collect();
        assert_eq!(starts, [3, 6, 8]);
        assert!(docs[1].parse().unwrap().is_none(), "the empty document");
        assert_eq!(
            docs[2].parse().unwrap().unwrap()["spec"]["pool"]["maxSize"],
            0
        );
    }

    #[test]
    fn a_stream_without_markers_is_one_document() {
        let docs = split("a: 1\nb: 2\n");
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].start_line, 1);
    }

    #[test]
    fn finds_the_line_of_nested_fields_and_items() {
        let doc = &split(STREAM)[2];
        let line = |path| doc.line_of(path);
        assert_eq!(line("metadata.name"), 11);
        assert_eq!(line("spec.uri"), 13);
        assert_eq!(line("spec.schema.constraints[0].label"), 17);
        assert_eq!(line("spec.schema.constraints[1]"), 18);
        assert_eq!(line("spec.schema.constraints[1].properties[1]"), 21);
        assert_eq!(line("spec.pool.maxSize"), 24);
        // Not there: the deepest part that is.
        assert_eq!(line("spec.pool.fetchSize"), 23);
        assert_eq!(line("spec.tls"), 12);
    }

    #[test]
    fn finds_lines_in_flow_style() {
        let doc = &split(
            "kind: DatabaseConnection\nspec: {uri: \"bolt://db\",\n  schema: {constraints: [{name: a},\n    {name: b, properties: [x, y]}]},\n  pool: {maxSize: 0}}\n",
        )[0];
        let line = |path| doc.line_of(path);
        assert_eq!(line("spec.uri"), 2);
        assert_eq!(line("spec.schema.constraints[0].name"), 3);
        assert_eq!(line("spec.schema.constraints[1]"), 4);
        assert_eq!(line("spec.schema.constraints[1].properties[1]"), 4);
        assert_eq!(line("spec.pool.maxSize"), 5);
        assert_eq!(line("spec.pool.fetchSize"), 5);
        assert_eq!(line("metadata.name"), 1);
        // A number too large for 64 bits does not lose the locations after it.
        let doc = &split("spec:\n  big: 123456789012345678901234567890\n  uri: x\n")[0];
        assert_eq!(doc.line_of("spec.uri"), 3);
    }

    #[test]
    fn parse_errors_carry_the_line_in_the_file() {
        let docs = split("a: 1\n---\nkey: [unclosed\nnext: 1\n");
        let (line, message) = docs[1].parse().unwrap_err();
        assert!(line >= 3, "line {line}: {message}");
        assert!(!message.contains('\n'), "one line: {message}");
    }
}
