//! Multi-document YAML as a GitOps repository holds it: each document's text and first line,
//! its parsed value, and the line a field path points at, so problems read `file:line`.

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
        match serde_yaml::from_str::<Option<serde_json::Value>>(&self.text) {
            Ok(value) => Ok(value.filter(|v| !v.is_null())),
            Err(error) => {
                let line = error.location().map_or(0, |l| l.line().saturating_sub(1));
                Err((self.start_line + line, error.to_string()))
            }
        }
    }

    /// The line of `path` (as `spec.schema.constraints[1].name`), or of the deepest part of it
    /// found; the document's first line when nothing matches (flow style, say).
    pub fn line_of(&self, path: &str) -> usize {
        let lines: Vec<&str> = self.text.lines().collect();
        let mut block = Block {
            start: 0,
            end: lines.len(),
        };
        let mut found = None;
        for segment in segments(path) {
            let hit = match segment {
                Segment::Key(key) => block.find_key(&lines, key),
                Segment::Index(index) => block.find_item(&lines, index),
            };
            match hit {
                Some((line, inner)) => {
                    found = Some(line);
                    block = inner;
                }
                None => break,
            }
        }
        self.start_line + found.unwrap_or_else(|| first_content(&lines).unwrap_or(0))
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

fn first_content(lines: &[&str]) -> Option<usize> {
    lines.iter().position(|l| is_content(l))
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

/// Lines `[start, end)` holding one mapping or sequence.
#[derive(Clone, Copy)]
struct Block {
    start: usize,
    end: usize,
}

/// Indentation, and the column where the content starts after any `- ` item markers.
fn columns(line: &str) -> (usize, usize) {
    let indent = line.len() - line.trim_start_matches(' ').len();
    let mut column = indent;
    let mut rest = &line[indent..];
    while let Some(after) = rest.strip_prefix("- ") {
        let spaces = after.len() - after.trim_start_matches(' ').len();
        column += 2 + spaces;
        rest = &after[spaces..];
    }
    (indent, column)
}

fn key_of(line: &str) -> Option<&str> {
    let (_, column) = columns(line);
    let rest = &line[column..];
    let (key, _) = rest.split_once(':')?;
    Some(key.trim().trim_matches(['"', '\'']))
}

impl Block {
    /// The line of `key` among this mapping's own keys, and the block of its value.
    fn find_key(self, lines: &[&str], key: &str) -> Option<(usize, Block)> {
        let first = (self.start..self.end).find(|&i| is_content(lines[i]))?;
        let (_, column) = columns(lines[first]);
        let line = (first..self.end).find(|&i| {
            is_content(lines[i]) && columns(lines[i]).1 == column && key_of(lines[i]) == Some(key)
        })?;
        // The value runs until the next line at this column or less (a sibling key), except for
        // sequence items written at the key's own indentation.
        let end = (line + 1..self.end)
            .find(|&i| {
                let l = lines[i];
                if !is_content(l) {
                    return false;
                }
                let (indent, _) = columns(l);
                indent < column || (indent == column && !l[indent..].starts_with("- "))
            })
            .unwrap_or(self.end);
        Some((
            line,
            Block {
                start: line + 1,
                end,
            },
        ))
    }

    /// The line of item `index` of this sequence, and the block of that item.
    fn find_item(self, lines: &[&str], index: usize) -> Option<(usize, Block)> {
        let first = (self.start..self.end).find(|&i| is_content(lines[i]))?;
        let (indent, _) = columns(lines[first]);
        let items: Vec<usize> = (first..self.end)
            .filter(|&i| {
                let l = lines[i];
                is_content(l) && columns(l).0 == indent && l[indent..].starts_with("- ")
            })
            .collect();
        let line = *items.get(index)?;
        let end = items.get(index + 1).copied().unwrap_or(self.end);
        Some((line, Block { start: line, end }))
    }
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
    fn parse_errors_carry_the_line_in_the_file() {
        let docs = split("a: 1\n---\nkey: [unclosed\nnext: 1\n");
        let (line, message) = docs[1].parse().unwrap_err();
        assert!(line >= 3, "line {line}: {message}");
    }
}
