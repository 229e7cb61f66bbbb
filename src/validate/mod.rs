//! `dbconn-operator validate`: checks `DatabaseConnection` manifests offline, with no cluster and
//! no network, so a GitOps pull request fails before Argo CD or Flux applies a bad one. Every
//! problem is one line, `file:line: name: field: message`; other kinds are skipped and counted.

mod documents;
mod object;
mod structural;

use std::{
    io::Read,
    path::{Path, PathBuf},
};

use serde::Serialize;
use serde_json::Value;

pub use object::{Checker, Problem, Source};

const API_GROUP: &str = "dbconn.dev";
const API_VERSION: &str = "dbconn.dev/v1alpha1";
const KIND: &str = "DatabaseConnection";

/// How problems are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// `file:line: name: field: message`, one line per problem.
    Text,
    /// One JSON object with every problem and the counts, for tools.
    Json,
}

/// One problem, located.
#[derive(Debug, Serialize)]
pub struct Finding {
    pub file: String,
    pub line: usize,
    /// `metadata.name`, or `-` where the document has none.
    pub name: String,
    pub field: String,
    pub message: String,
    pub source: Source,
}

/// The outcome of a run.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub files: usize,
    /// DatabaseConnections checked.
    pub checked: usize,
    /// Documents of other kinds, left alone.
    pub skipped: usize,
    pub problems: Vec<Finding>,
}

/// A path that could not be read: the run stops, since a partial check would pass silently.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {source}")]
pub struct InputError {
    path: String,
    #[source]
    source: std::io::Error,
}

/// Checks every input (`-` for standard input, a file, or a directory searched recursively for
/// `.yaml`, `.yml` and `.json`).
pub fn run(inputs: &[String]) -> Result<Report, InputError> {
    let checker = Checker::default();
    let mut report = Report::default();
    for input in inputs {
        if input == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|source| InputError {
                    path: "standard input".into(),
                    source,
                })?;
            check_text(&checker, "-", &text, &mut report);
            continue;
        }
        for file in manifest_files(Path::new(input))? {
            let text = std::fs::read_to_string(&file).map_err(|source| InputError {
                path: file.display().to_string(),
                source,
            })?;
            check_text(&checker, &file.display().to_string(), &text, &mut report);
        }
    }
    Ok(report)
}

/// The files under `path`, sorted so that output is stable; hidden directories are skipped.
fn manifest_files(path: &Path) -> Result<Vec<PathBuf>, InputError> {
    let error = |source| InputError {
        path: path.display().to_string(),
        source,
    };
    if !path.is_dir() {
        std::fs::metadata(path).map_err(error)?;
        return Ok(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(path)
        .map_err(error)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for entry in entries {
        let name = entry.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if entry.is_dir() {
            if !name.starts_with('.') {
                files.extend(manifest_files(&entry)?);
            }
        } else if [".yaml", ".yml", ".json"].iter().any(|s| name.ends_with(s)) {
            files.push(entry);
        }
    }
    Ok(files)
}

/// Checks the documents of one file into `report`.
pub fn check_text(checker: &Checker, file: &str, text: &str, report: &mut Report) {
    report.files += 1;
    for document in documents::split(text) {
        let value = match document.parse() {
            Ok(Some(value)) => value,
            Ok(None) => continue,
            Err((line, message)) => {
                report.problems.push(Finding {
                    file: file.to_owned(),
                    line,
                    name: "-".into(),
                    field: "-".into(),
                    message: format!("not valid YAML: {message}"),
                    source: Source::Apiserver,
                });
                continue;
            }
        };
        let kind = value.get("kind").and_then(Value::as_str);
        let api_version = value.get("apiVersion").and_then(Value::as_str);
        let ours = kind == Some(KIND)
            && api_version.is_some_and(|v| v.split('/').next() == Some(API_GROUP));
        if !ours {
            report.skipped += 1;
            continue;
        }
        report.checked += 1;
        let name = value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_owned();
        let finding = |problem: Problem| Finding {
            file: file.to_owned(),
            line: document.line_of(&problem.field),
            name: name.clone(),
            field: problem.field,
            message: problem.message,
            source: problem.source,
        };
        if api_version != Some(API_VERSION) {
            report.problems.push(finding(Problem {
                field: "apiVersion".into(),
                message: format!(
                    "{} is not served; use {API_VERSION}",
                    api_version.unwrap_or_default()
                ),
                source: Source::Apiserver,
            }));
            continue;
        }
        report
            .problems
            .extend(checker.check(&value).into_iter().map(finding));
    }
}

impl Report {
    /// The problems in the chosen format, for standard output.
    pub fn render(&self, format: OutputFormat) -> String {
        match format {
            OutputFormat::Json => {
                serde_json::to_string_pretty(self).expect("the report serializes") + "\n"
            }
            OutputFormat::Text => self
                .problems
                .iter()
                .map(|p| {
                    format!(
                        "{}:{}: {}: {}: {}\n",
                        p.file, p.line, p.name, p.field, p.message
                    )
                })
                .collect(),
        }
    }

    /// One line for standard error.
    pub fn summary(&self) -> String {
        format!(
            "validate: {} DatabaseConnection(s) in {} file(s), {} problem(s); {} other document(s) skipped",
            self.checked,
            self.files,
            self.problems.len(),
            self.skipped
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "\
apiVersion: v1
kind: Secret
metadata:
  name: login
---
apiVersion: dbconn.dev/v1alpha1
kind: DatabaseConnection
metadata:
  name: graph
spec:
  engine: neo4j
  uri: http://db:7687
  credentials:
    secretRef:
      name: login
---
apiVersion: dbconn.dev/v1beta1
kind: DatabaseConnection
metadata:
  name: future
";

    fn report(text: &str) -> Report {
        let mut report = Report::default();
        check_text(&Checker::default(), "app.yaml", text, &mut report);
        report
    }

    #[test]
    fn problems_are_located_and_other_kinds_counted() {
        let report = report(STREAM);
        assert_eq!((report.files, report.checked, report.skipped), (1, 2, 1));
        let text = report.render(OutputFormat::Text);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].starts_with(
                "app.yaml:12: graph: spec.uri: Invalid value: \"object\": for engine neo4j"
            ),
            "{text}"
        );
        assert_eq!(
            lines[1],
            "app.yaml:17: future: apiVersion: dbconn.dev/v1beta1 is not served; use dbconn.dev/v1alpha1"
        );
    }

    #[test]
    fn json_output_carries_the_same_findings() {
        let json: Value = serde_json::from_str(&report(STREAM).render(OutputFormat::Json)).unwrap();
        assert_eq!(json["checked"], 2);
        assert_eq!(json["problems"][0]["line"], 12);
        assert_eq!(json["problems"][0]["field"], "spec.uri");
        assert_eq!(json["problems"][0]["source"], "apiserver");
    }

    #[test]
    fn broken_yaml_is_a_problem_not_a_crash() {
        let report = report("apiVersion: v1\n---\nkind: [\n");
        assert_eq!(report.problems.len(), 1);
        assert!(report.problems[0].message.starts_with("not valid YAML"));
        assert!(report.problems[0].line >= 3);
    }
}
