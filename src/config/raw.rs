//! The raw pipeline: the TOML file as tables of located values, with
//! `${VAR}` expanded, before anything is checked against stage kinds.

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diag::{Diagnostic, Loc};
use crate::suggest::did_you_mean;

/// A value and where it was written.
#[derive(Debug, Clone)]
pub struct RawValue {
    pub value: toml::Value,
    pub loc: Loc,
}

/// One `key = value` line.
#[derive(Debug, Clone)]
pub struct RawEntry {
    pub key: String,
    pub key_loc: Loc,
    pub value: RawValue,
}

/// A table (`[pipeline]` or one `[[stage]]`) with its entries in file order.
#[derive(Debug, Clone)]
pub struct RawTable {
    /// Where the table starts: errors about the table as a whole point here.
    pub loc: Loc,
    pub entries: Vec<RawEntry>,
}

impl RawTable {
    pub fn get(&self, key: &str) -> Option<&RawEntry> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// A key's value, when it is a string.
    pub fn str_of(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(|e| e.value.value.as_str())
    }

    /// Where a key's value was written, if the key is there.
    pub fn value_loc(&self, key: &str) -> Option<Loc> {
        self.get(key).map(|e| e.value.loc.clone())
    }

    /// Set a key, replacing an earlier value (used by `--set`).
    pub fn set(&mut self, entry: RawEntry) {
        if let Some(old) = self.entries.iter_mut().find(|e| e.key == entry.key) {
            *old = entry;
        } else {
            self.entries.push(entry);
        }
    }
}

/// A whole pipeline file.
#[derive(Debug, Clone, Default)]
pub struct RawDoc {
    pub pipeline: Option<RawTable>,
    pub stages: Vec<RawTable>,
}

/// Parse a pipeline file's text. Syntax errors end the parse; everything else
/// is collected into `errors` and parsing goes on.
pub fn parse(text: &str, source: usize, errors: &mut Vec<Diagnostic>) -> Option<RawDoc> {
    let doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            errors.push(syntax_error(&e, text, source));
            return None;
        }
    };
    let loc = |span: std::ops::Range<usize>| Loc { source, span };
    let mut raw = RawDoc::default();
    for (key, value) in doc.get_ref() {
        match (key.get_ref().as_ref(), value.get_ref()) {
            ("pipeline", DeValue::Table(t)) => {
                raw.pipeline = Some(table(t, loc(value.span()), source, errors));
            }
            ("stage", DeValue::Array(items)) => {
                for item in items {
                    if let Some(t) = stage_table(item, source, errors) {
                        raw.stages.push(t);
                    }
                }
            }
            ("pipeline", _) => errors.push(
                Diagnostic::error("`pipeline` must be a table", Some(loc(key.span())))
                    .help(Some("write it as a `[pipeline]` section".into())),
            ),
            ("stage", _) => errors.push(
                Diagnostic::error("`stage` must be an array of tables", Some(loc(key.span())))
                    .help(Some("write stages as `[[stage]]` sections".into())),
            ),
            (other, _) => errors.push(
                Diagnostic::error(
                    format!("unknown top-level key `{other}`"),
                    Some(loc(key.span())),
                )
                .label("unknown key")
                .help(did_you_mean(other, ["pipeline", "stage"])),
            ),
        }
    }
    Some(raw)
}

/// One element of the `stage` array, which must be a table.
fn stage_table(
    item: &toml::Spanned<DeValue<'_>>,
    source: usize,
    errors: &mut Vec<Diagnostic>,
) -> Option<RawTable> {
    let loc = Loc {
        source,
        span: item.span(),
    };
    match item.get_ref() {
        DeValue::Table(t) => Some(table(t, loc, source, errors)),
        _ => {
            errors.push(
                Diagnostic::error("each `stage` must be a table", Some(loc))
                    .help(Some("write stages as `[[stage]]` sections".into())),
            );
            None
        }
    }
}

/// A TOML syntax error, at its place, with a hint for a common mistake.
fn syntax_error(e: &toml::de::Error, text: &str, source: usize) -> Diagnostic {
    let span = e.span().unwrap_or(0..0);
    let message = e.message().trim().to_string();
    let duplicate = message.contains("duplicate key");
    let help = match text.get(span.clone()) {
        Some("name") if duplicate => {
            Some("`name` is the stage's name; `write` names its files with `filename`".to_string())
        }
        Some("stage") if duplicate => Some(
            "did you mean `[[stage]]`? Each stage is a `[[stage]]` section, with two brackets"
                .to_string(),
        ),
        _ => None,
    };
    Diagnostic::error(
        format!("invalid TOML: {message}"),
        Some(Loc { source, span }),
    )
    .help(help)
}

fn table(t: &DeTable<'_>, loc: Loc, source: usize, errors: &mut Vec<Diagnostic>) -> RawTable {
    let mut entries: Vec<RawEntry> = t
        .iter()
        .map(|(k, v)| RawEntry {
            key: k.get_ref().to_string(),
            key_loc: Loc {
                source,
                span: k.span(),
            },
            value: RawValue {
                value: convert(v, source, errors),
                loc: Loc {
                    source,
                    span: v.span(),
                },
            },
        })
        .collect();
    entries.sort_by_key(|e| e.key_loc.span.start);
    // A `[[stage]]` table's span can start at its first key; point at the
    // header line instead when one is found just above it.
    RawTable { loc, entries }
}

/// Convert a parsed TOML value to a plain one, expanding `${VAR}` in strings.
fn convert(v: &Spanned<DeValue<'_>>, source: usize, errors: &mut Vec<Diagnostic>) -> toml::Value {
    let loc = || Loc {
        source,
        span: v.span(),
    };
    match v.get_ref() {
        DeValue::String(s) => match expand_env(s, |name| std::env::var(name).ok()) {
            Ok(s) => toml::Value::String(expand_home(s, std::env::var_os("HOME"))),
            Err(e) => {
                errors.push(Diagnostic::error(e.to_string(), Some(loc())).help(e.help()));
                toml::Value::String(s.to_string())
            }
        },
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => toml::Value::Integer(n),
            Err(_) => {
                errors.push(Diagnostic::error(
                    format!("integer `{i}` does not fit in 64 bits"),
                    Some(loc()),
                ));
                toml::Value::Integer(0)
            }
        },
        DeValue::Float(f) => toml::Value::Float(f.as_str().parse().unwrap_or(f64::NAN)),
        DeValue::Boolean(b) => toml::Value::Boolean(*b),
        DeValue::Datetime(d) => toml::Value::Datetime(*d),
        DeValue::Array(items) => {
            toml::Value::Array(items.iter().map(|i| convert(i, source, errors)).collect())
        }
        DeValue::Table(t) => toml::Value::Table(
            t.iter()
                .map(|(k, v)| (k.get_ref().to_string(), convert(v, source, errors)))
                .collect(),
        ),
    }
}

/// Why a string's `${VAR}` could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvError {
    /// `${` without its `}`, in the string `text`.
    Unclosed { text: String },
    /// A name that is not `[A-Za-z0-9_]+`, in the string `text`.
    BadName { name: String, text: String },
    /// A variable that is not set and has no default.
    Unset { name: String },
}

impl EnvError {
    /// A line telling how to write it right.
    pub fn help(&self) -> Option<String> {
        match self {
            EnvError::Unclosed { .. } => {
                Some("write `${VAR}` or `${VAR:-default}`, or `$${` for a literal `${`".into())
            }
            EnvError::BadName { .. } => None,
            EnvError::Unset { name } => {
                Some(format!("set it, or give a default: `${{{name}:-...}}`"))
            }
        }
    }
}

impl std::fmt::Display for EnvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvError::Unclosed { text } => write!(f, "unclosed `${{` in \"{text}\""),
            EnvError::BadName { name, text } => {
                write!(f, "invalid variable name `{name}` in \"{text}\"")
            }
            EnvError::Unset { name } => write!(f, "environment variable `{name}` is not set"),
        }
    }
}

impl std::error::Error for EnvError {}

/// `~/...` at the start of a string is the user's home folder, as in a
/// shell (a path option written `~/Pictures` would otherwise make a folder
/// named `~`).
pub fn expand_home(s: String, home: Option<std::ffi::OsString>) -> String {
    match (s.strip_prefix("~/"), home.as_ref().and_then(|h| h.to_str())) {
        (Some(rest), Some(home)) => format!("{}/{rest}", home.trim_end_matches('/')),
        _ => s,
    }
}

/// Expand `${VAR}` and `${VAR:-default}`; `$${` stands for a literal `${`.
pub fn expand_env(s: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, EnvError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(lit) = after.strip_prefix("${") {
            out.push_str("${");
            rest = lit;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = body.find('}') else {
            return Err(EnvError::Unclosed {
                text: s.to_string(),
            });
        };
        let inner = &body[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(EnvError::BadName {
                name: name.to_string(),
                text: s.to_string(),
            });
        }
        match (lookup(name), default) {
            (Some(v), _) if !v.is_empty() || default.is_none() => out.push_str(&v),
            (_, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(EnvError::Unset {
                    name: name.to_string(),
                });
            }
            (Some(v), None) => out.push_str(&v),
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME_DIR" => Some("/home/me".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_a_home_folder_only_at_the_start() {
        let home = Some(std::ffi::OsString::from("/home/me/"));
        assert_eq!(expand_home("~/p".into(), home.clone()), "/home/me/p");
        assert_eq!(expand_home("a/~/p".into(), home.clone()), "a/~/p");
        assert_eq!(expand_home("~user/p".into(), home), "~user/p");
        assert_eq!(expand_home("~/p".into(), None), "~/p");
    }

    #[test]
    fn expands_variables_and_defaults() {
        assert_eq!(expand_env("${HOME_DIR}/x", env).unwrap(), "/home/me/x");
        assert_eq!(expand_env("${NOPE:-samples}/p", env).unwrap(), "samples/p");
        assert_eq!(expand_env("${HOME_DIR:-d}", env).unwrap(), "/home/me");
        assert_eq!(expand_env("${EMPTY:-d}", env).unwrap(), "d");
        assert_eq!(
            expand_env("cost $5 and $${X}", env).unwrap(),
            "cost $5 and ${X}"
        );
    }

    #[test]
    fn reports_unset_and_malformed_variables() {
        assert_eq!(
            expand_env("${NOPE}", env).unwrap_err().to_string(),
            "environment variable `NOPE` is not set"
        );
        assert_eq!(
            expand_env("${NOPE}", env).unwrap_err().help().as_deref(),
            Some("set it, or give a default: `${NOPE:-...}`")
        );
        assert_eq!(
            expand_env("${NOPE", env).unwrap_err().to_string(),
            "unclosed `${` in \"${NOPE\""
        );
        assert!(
            expand_env("${NOPE", env)
                .unwrap_err()
                .to_string()
                .starts_with("unclosed `${`")
        );
        assert!(
            expand_env("${a b}", env)
                .unwrap_err()
                .to_string()
                .starts_with("invalid variable name")
        );
    }
}
