//! Why a stage could not process an item, and why a kind could not build a
//! stage: the messages users read next to an item's path or a stage's name.

use std::fmt;

use crate::output::OutputError;

/// Why a stage could not process an item. The message is shown to the user
/// next to the item's path, so it says what went wrong, not where in the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageError {
    /// The item can't be processed, for the reason given in plain words.
    Item(String),
    /// An output could not be placed: refused by the output guard, or the
    /// system said no.
    Output(OutputError),
}

impl StageError {
    pub fn new(msg: impl Into<String>) -> StageError {
        StageError::Item(msg.into())
    }

    /// The message as shown.
    pub fn message(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StageError::Item(m) => f.write_str(m),
            StageError::Output(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for StageError {}

impl From<OutputError> for StageError {
    fn from(e: OutputError) -> Self {
        StageError::Output(e)
    }
}

impl From<std::io::Error> for StageError {
    fn from(e: std::io::Error) -> Self {
        StageError::Item(e.to_string())
    }
}

/// Why a kind could not build a stage from its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KindError {
    /// The options do not parse (checked tables always do; an embedding
    /// program's may not).
    Options(String),
    /// Something the options name can't be used (a glob, an image to load).
    Unusable(String),
}

impl fmt::Display for KindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KindError::Options(m) | KindError::Unusable(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for KindError {}

impl From<crate::units::UnitError> for KindError {
    fn from(e: crate::units::UnitError) -> Self {
        KindError::Options(e.to_string())
    }
}

impl From<String> for KindError {
    fn from(e: String) -> Self {
        KindError::Unusable(e)
    }
}

impl From<super::OptionsError> for KindError {
    fn from(e: super::OptionsError) -> Self {
        KindError::Options(e.0)
    }
}
