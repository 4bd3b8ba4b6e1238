//! A kind's options: the trait its options struct implements, and the
//! checks every kind shares (each key on its own, the bounds its schema
//! declares, then the whole table), in the user's words.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A problem with one option of a stage, found while checking its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError {
    /// The option's key, or `None` when the problem concerns the stage as a
    /// whole (e.g. a required key is missing).
    pub key: Option<String>,
    pub message: String,
    pub help: Option<String>,
}

impl OptionError {
    pub fn at(key: &str, message: impl Into<String>) -> OptionError {
        OptionError {
            key: Some(key.to_string()),
            message: message.into(),
            help: None,
        }
    }

    pub fn stage(message: impl Into<String>) -> OptionError {
        OptionError {
            key: None,
            message: message.into(),
            help: None,
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> OptionError {
        self.help = Some(help.into());
        self
    }
}

/// The options struct of a stage kind. Every field has a default (the struct
/// derives `Default` and uses `#[serde(default)]`), so each key can be checked
/// on its own and every error reported, not only the first.
pub trait StageOptions:
    DeserializeOwned + Serialize + schemars::JsonSchema + Default + Sized
{
    /// Range and cross-field checks that serde's types can't express.
    fn validate(&self) -> Vec<OptionError> {
        Vec::new()
    }
}

/// Check an options table key by key, then as a whole.
pub fn check_options<T: StageOptions>(table: &toml::Table) -> Vec<OptionError> {
    let mut errors = Vec::new();
    let mut good = toml::Table::new();
    let schema = schemars::schema_for!(T);
    for (key, value) in table {
        let mut one = toml::Table::new();
        one.insert(key.clone(), value.clone());
        match toml::Value::Table(one).try_into::<T>() {
            Ok(_) => {
                good.insert(key.clone(), value.clone());
            }
            Err(_) if bounded_number(&schema, key).is_some() => {
                // A float for a count, a number too big for its type, a
                // string ...: the range says what is wanted.
                if let Some(e) = bounded_number(&schema, key).map(|(what, lo, hi)| {
                    // An example to copy: the option's own default.
                    let example = schema
                        .get("properties")
                        .and_then(|p| p.get(key))
                        .and_then(|p| p.get("default"))
                        .filter(|d| d.is_number())
                        .map(|d| format!(", e.g. {key} = {d}"))
                        .unwrap_or_default();
                    OptionError::at(
                        key,
                        format!(
                            "`{key}` must be {what} from {lo} to {hi}, not {}{example}",
                            shown(value)
                        ),
                    )
                }) {
                    errors.push(e);
                }
            }
            Err(e) => {
                let msg = clean_serde_message(e.message());
                let help = variant_suggestion(&msg);
                let mut err = OptionError::at(key, format!("`{key}`: {msg}"));
                err.help = help;
                errors.push(err);
            }
        }
    }
    errors.extend(check_bounds(&schema, &good));
    if errors.is_empty() {
        match toml::Value::Table(good).try_into::<T>() {
            Ok(opts) => errors.extend(opts.validate()),
            Err(e) => errors.push(OptionError::stage(clean_serde_message(e.message()))),
        }
    }
    errors
}

/// Check each number in `table` against the `minimum` and `maximum` its
/// option declares in the schema (the bounds `conveyor schema` shows, so
/// what is documented is what is enforced), and refuse NaN and infinities
/// in every float option.
fn check_bounds(schema: &schemars::Schema, table: &toml::Table) -> Vec<OptionError> {
    let props = schema.get("properties").and_then(|p| p.as_object());
    let mut errors = Vec::new();
    for (key, value) in table {
        let v = match value {
            toml::Value::Integer(i) => *i as f64,
            toml::Value::Float(f) => *f,
            _ => continue,
        };
        let prop = props.and_then(|p| p.get(key));
        let bound = |name: &str| prop.and_then(|p| p.get(name)).filter(|b| b.is_number());
        let (min, max) = (bound("minimum"), bound("maximum"));
        let too_small = min.and_then(|m| m.as_f64()).is_some_and(|m| v < m);
        let too_big = max.and_then(|m| m.as_f64()).is_some_and(|m| v > m);
        if v.is_finite() && !too_small && !too_big {
            continue;
        }
        let shown = shown(value);
        let message = match (min, max) {
            (Some(lo), Some(hi)) => format!("`{key}` must be from {lo} to {hi}, not {shown}"),
            (Some(lo), None) => format!("`{key}` must be at least {lo}, not {shown}"),
            (None, Some(hi)) => format!("`{key}` must be at most {hi}, not {shown}"),
            (None, None) => format!("`{key}` must be a finite number, not {shown}"),
        };
        errors.push(OptionError::at(key, message));
    }
    errors
}

/// `("a whole number" or "a number", minimum, maximum)` of an option whose
/// schema declares both bounds.
fn bounded_number(
    schema: &schemars::Schema,
    key: &str,
) -> Option<(&'static str, serde_json::Value, serde_json::Value)> {
    let prop = schema.get("properties")?.get(key)?;
    let types = prop.get("type")?;
    let is = |t: &str| {
        types.as_str() == Some(t) || types.as_array().is_some_and(|a| a.contains(&t.into()))
    };
    let what = if is("integer") {
        "a whole number"
    } else if is("number") {
        "a number"
    } else {
        return None;
    };
    Some((
        what,
        prop.get("minimum")?.clone(),
        prop.get("maximum")?.clone(),
    ))
}

/// A value as a message shows it: short, in the way it could be written.
fn shown(value: &toml::Value) -> String {
    match value {
        toml::Value::Float(f) if f.is_nan() => "nan".into(),
        toml::Value::Float(f) if f.is_infinite() => if *f > 0.0 { "inf" } else { "-inf" }.into(),
        toml::Value::Float(f) if f.abs() >= 1e9 || (*f != 0.0 && f.abs() < 1e-4) => {
            format!("{f:e}")
        }
        toml::Value::String(t) => format!("\"{t}\""),
        other => other.to_string(),
    }
}

/// Turn a checked options table into the options struct.
pub fn parse_options<T: StageOptions>(table: &toml::Table) -> Result<T, OptionsError> {
    toml::Value::Table(table.clone())
        .try_into::<T>()
        .map_err(|e| OptionsError(clean_serde_message(e.message())))
}

/// What an options table means: parsed into its struct, defaults and all,
/// and written back as JSON (keys sorted), so that `fit = "contain"` written
/// out and left to its default mean the same.
pub fn meaning<T: StageOptions>(table: &toml::Table) -> serde_json::Value {
    parse_options::<T>(table)
        .ok()
        .and_then(|opts| serde_json::to_value(&opts).ok())
        .unwrap_or_else(|| serde_json::Value::String(toml::to_string(table).unwrap_or_default()))
}

/// For kinds whose options decide only which items go on (a filter), not
/// what any output looks like.
pub fn no_meaning(_: &toml::Table) -> serde_json::Value {
    serde_json::Value::Null
}

/// An options table that does not parse into its struct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionsError(pub String);

impl std::fmt::Display for OptionsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OptionsError {}

/// For serde's "unknown variant `x`, expected one of `a`, `b`", the closest
/// expected value.
fn variant_suggestion(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("unknown variant `")?;
    let (given, expected) = rest.split_once('`')?;
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    crate::suggest::suggest(given, candidates.iter().copied())
        .map(|s| format!("did you mean `{s}`?"))
}

/// serde's messages are good but end with details meant for programmers.
fn clean_serde_message(msg: &str) -> String {
    msg.trim().trim_end_matches('.').replace("\n", " ")
}

/// Options of kinds that take none.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NoOptions {}

impl StageOptions for NoOptions {}
