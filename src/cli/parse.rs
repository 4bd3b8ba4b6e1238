//! Value parsers: each flag's text becomes a typed value while clap parses,
//! so a bad value is reported like any other usage error, before anything
//! is loaded.

use std::convert::Infallible;
use std::error::Error;

use clap::builder::{EnumValueParser, TypedValueParser};

use crate::config::Override;
use crate::exec::shard::Shard;
use crate::graph::GraphFormat;

/// `--shard`: a fixed slice, or `auto` (read from the scheduler's
/// environment once the other flags are known).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardArg {
    Auto,
    Fixed(Shard),
}

/// `--shard I/N|auto`.
pub fn shard(text: &str) -> Result<ShardArg, Box<dyn Error + Send + Sync>> {
    if text == "auto" {
        return Ok(ShardArg::Auto);
    }
    Ok(ShardArg::Fixed(Shard::parse(text)?))
}

/// `--memory SIZE`: bytes, or a size with a unit (`300MiB`, `2GiB`).
pub fn memory(text: &str) -> Result<u64, Box<dyn Error + Send + Sync>> {
    let bytes = crate::units::parse_size(text)?;
    if bytes < 1 << 20 {
        return Err(format!("`{text}` is less than 1MiB: too little to decode an image in").into());
    }
    Ok(bytes)
}

/// `--settle DURATION`: `500ms`, `2s`, a bare number of seconds.
pub fn duration(text: &str) -> Result<std::time::Duration, Box<dyn Error + Send + Sync>> {
    Ok(crate::units::parse_duration(text)?)
}

/// `--set STAGE.KEY=VALUE`. The text is checked against the pipeline when
/// it loads, where an error can point into it and name the stages there.
pub fn set(text: &str) -> Result<Override, Infallible> {
    Ok(Override::Set(text.to_string()))
}

/// `--mode STAGE=MODE` or `--mode MODE`, checked when the pipeline loads.
pub fn mode(text: &str) -> Result<Override, Infallible> {
    Ok(Override::Mode(text.to_string()))
}

/// The formats of `conveyor graph`, as the command line names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FormatName {
    Text,
    Dot,
    Mermaid,
}

impl From<FormatName> for GraphFormat {
    fn from(name: FormatName) -> GraphFormat {
        match name {
            FormatName::Text => GraphFormat::Text,
            FormatName::Dot => GraphFormat::Dot,
            FormatName::Mermaid => GraphFormat::Mermaid,
        }
    }
}

/// `graph --format text|dot|mermaid`.
pub fn graph_format() -> impl TypedValueParser<Value = GraphFormat> {
    EnumValueParser::<FormatName>::new().map(GraphFormat::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_text_is_auto_or_a_slice() {
        assert_eq!(shard("auto").ok(), Some(ShardArg::Auto));
        let fixed = ShardArg::Fixed(Shard { index: 1, count: 4 });
        assert_eq!(shard("1/4").ok(), Some(fixed));
        let err = shard("5/4").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("shard index 5 must be below the count 4 (indices start at 0)")
        );
    }
}
