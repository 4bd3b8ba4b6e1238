//! `chaos`: fault injection for testing pipelines and conveyor itself. On
//! matching items it panics, aborts, segfaults, hangs, runs out of memory or
//! fails; every other item passes through unchanged.

use std::sync::Arc;

use globset::{GlobBuilder, GlobMatcher};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::item::{Item, PayloadType, Types};
use crate::stage::{Built, KindSpec, OptionError, Output, Stage, StageError, StageOptions};

/// What to do to a matching item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Panic (the Rust kind: unwinding).
    Panic,
    /// Abort the process (SIGABRT).
    Abort,
    /// Crash with SIGSEGV.
    Segfault,
    /// Never return.
    Hang,
    /// Allocate until the allocator fails; only in processes mode with a
    /// `memory_limit`, so it can't exhaust the machine.
    Oom,
    /// Fail the item with an ordinary error.
    #[default]
    Error,
}

/// Options of `chaos`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ChaosOptions {
    /// What to do to a matched item: error, panic, abort, segfault, hang or
    /// oom (the last ones only make sense in processes mode).
    pub action: Action,
    /// Glob on the item's path relative to the scan root; items that don't
    /// match pass through.
    #[serde(rename = "match")]
    pub pattern: Option<String>,
    /// Hit every N-th item (by scan order) instead of matching by name, 1
    /// to 1000000000.
    #[schemars(range(min = 1, max = 1_000_000_000))]
    pub every: Option<u64>,
    /// Hit only the first N attempts of an item (1 to 1000), so retries can
    /// succeed; default: every attempt.
    #[schemars(range(min = 1, max = 1000))]
    pub times: Option<u32>,
}

impl StageOptions for ChaosOptions {
    fn validate(&self) -> Vec<OptionError> {
        let mut errors = Vec::new();
        if let Some(p) = &self.pattern
            && let Err(e) = GlobBuilder::new(p).build()
        {
            errors.push(OptionError::at(
                "match",
                format!("invalid glob `{p}`: {}", e.kind()),
            ));
        }
        if self.every == Some(0) {
            errors.push(OptionError::at("every", "`every` must be at least 1"));
        }
        if self.pattern.is_some() && self.every.is_some() {
            errors.push(OptionError::at(
                "every",
                "give either `match` or `every`, not both",
            ));
        }
        errors
    }
}

pub fn spec() -> KindSpec {
    KindSpec {
        name: "chaos",
        paths: crate::stage::no_paths,
        summary: "fault injection: panic, abort, segfault, hang, oom or error on matching items",
        accepts: Types::of(&[PayloadType::Nothing, PayloadType::Bytes, PayloadType::Image]),
        output: Output::SameAsInput,
        schema: || schemars::schema_for!(ChaosOptions),
        check: crate::stage::check_options::<ChaosOptions>,
        meaning: crate::stage::meaning::<ChaosOptions>,
        revision: 1,
        build: |t, ctx| {
            let opts: ChaosOptions = crate::stage::parse_options(t)?;
            let matcher = match &opts.pattern {
                Some(p) => Some(
                    GlobBuilder::new(p)
                        .literal_separator(false)
                        .build()
                        .map_err(|e| e.to_string())?
                        .compile_matcher(),
                ),
                None => None,
            };
            Ok(Built::Stage(Arc::new(Chaos {
                opts,
                matcher,
                in_worker: ctx.in_worker,
            })))
        },
    }
}

struct Chaos {
    opts: ChaosOptions,
    matcher: Option<GlobMatcher>,
    /// Built in a worker process: the only place it may exhaust memory.
    in_worker: bool,
}

impl Chaos {
    fn hits(&self, item: &Item) -> bool {
        let selected = match (&self.matcher, self.opts.every) {
            (Some(m), _) => m.is_match(item.rel_str()),
            (None, Some(n)) => (item.id + 1).is_multiple_of(n),
            (None, None) => true,
        };
        selected && self.opts.times.is_none_or(|t| item.attempt < t)
    }
}

/// True when this process has a finite data-segment limit.
fn memory_is_limited() -> bool {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_DATA, &mut rl) } == 0;
    ok && rl.rlim_cur != libc::RLIM_INFINITY
}

impl Stage for Chaos {
    fn process(&self, item: Item) -> Result<Option<Item>, StageError> {
        if !self.hits(&item) {
            return Ok(Some(item));
        }
        let rel = item.rel_str();
        match self.opts.action {
            Action::Error => Err(StageError::new(format!("chaos: injected error on {rel}"))),
            Action::Panic => panic!("chaos: injected panic on {rel}"),
            Action::Abort => std::process::abort(),
            Action::Segfault => {
                // Rust's stack-overflow handler catches SIGSEGV and returns,
                // expecting a real fault to repeat; restore the default first.
                // SAFETY: resetting a handler and raising a signal is what
                // this action is for.
                unsafe {
                    libc::signal(libc::SIGSEGV, libc::SIG_DFL);
                    libc::raise(libc::SIGSEGV);
                }
                Err(StageError::new("chaos: SIGSEGV was not delivered"))
            }
            Action::Hang => loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            },
            Action::Oom => {
                if !(self.in_worker && memory_is_limited()) {
                    return Err(StageError::new(
                        "chaos: oom only runs in processes mode with a memory_limit (it would exhaust this machine)",
                    ));
                }
                let mut hog: Vec<Vec<u8>> = Vec::new();
                loop {
                    // Touched, so the pages are really used.
                    hog.push(vec![1u8; 64 << 20]);
                    std::hint::black_box(&hog);
                }
            }
        }
    }
}
