//! The stage contract: what a kind implements and what it is given. Kinds
//! (`crate::stages`) and programs that embed conveyor with kinds of their own
//! depend on this module alone; it depends only on items, the output guard
//! and what a run reads.

mod error;
mod kind;
mod options;
mod traits;

pub use error::{KindError, StageError};
pub use kind::{BuildContext, Built, KindSpec, Output, StagePaths, no_paths};
pub use options::{
    NoOptions, OptionError, OptionsError, StageOptions, check_options, meaning, no_meaning,
    parse_options,
};
pub use traits::{
    Failure, Finish, Found, Hold, HoldFn, Kept, Source, SourceContext, SourceFacts, Stage,
};
