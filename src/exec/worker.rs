//! The child side of processes mode: a worker connects back to conveyor,
//! becomes one stage, and processes one item at a time until its input
//! channel closes.

use ipc_channel::ipc::{self, IpcSender};

use std::sync::Arc;

use super::call::Step;
use super::protocol::{Bootstrap, FromWorker, Reason, StageInit, ToWorker, WORKER_ARG, WireItem};
use crate::stage::{Built, Stage};
use crate::stages::Registry;

/// If this process was started as a worker, serve as one and exit; else
/// return. A program that embeds conveyor with its own command line calls
/// this first thing in `main`, with the same registry it runs pipelines with.
pub fn run_if_worker(registry: &Registry) {
    let mut args = std::env::args();
    let _exe = args.next();
    if args.next().as_deref() == Some(WORKER_ARG) {
        let code = match args.next() {
            Some(server) => serve(&server, registry),
            None => 2,
        };
        std::process::exit(code);
    }
}

/// Connect to `server`, then process items until conveyor hangs up.
/// Returns the exit code.
fn serve(server: &str, registry: &Registry) -> i32 {
    let Ok(bootstrap) = IpcSender::<Bootstrap>::connect(server.to_string()) else {
        return 3;
    };
    let (Ok((to_tx, to_rx)), Ok((from_tx, from_rx))) =
        (ipc::channel::<ToWorker>(), ipc::channel::<FromWorker>())
    else {
        return 3;
    };
    if bootstrap.send((to_tx, from_rx)).is_err() {
        return 3;
    }
    drop(bootstrap);

    let stages = match to_rx.recv() {
        Ok(ToWorker::Init(inits)) => match build_chain(&inits, registry) {
            Ok(stages) => stages,
            Err(e) => {
                let _ = from_tx.send(FromWorker::InitFailed(e.to_string()));
                return 2;
            }
        },
        _ => return 2,
    };
    if from_tx.send(FromWorker::Ready).is_err() {
        return 0;
    }
    super::call::install_panic_hook();
    // The answer to each item is sent before the next is read, so conveyor
    // always knows which item (and which stage) a crash belongs to.
    while let Ok(ToWorker::Item(wire)) = to_rx.recv() {
        let answer = match crate::item::Item::try_from(*wire) {
            Ok(item) => run_chain(&stages, item, &from_tx),
            Err(e) => Some(FromWorker::Done {
                at: 0,
                result: Err(Reason(e.to_string())),
            }),
        };
        match answer {
            Some(msg) => {
                let panicked = matches!(msg, FromWorker::Panicked { .. });
                if from_tx.send(msg).is_err() {
                    return 0;
                }
                if panicked {
                    // State after a panic can't be trusted: leave.
                    return 101;
                }
            }
            None => return 0,
        }
    }
    0
}

/// Why a worker could not build its chain of stages.
#[derive(Debug)]
enum InitError {
    Guard(std::io::Error),
    UnknownKind(String),
    BadOptions(String),
    Build(crate::stage::KindError),
    IsSource(String),
}

impl std::fmt::Display for InitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InitError::Guard(e) => write!(f, "cannot read the run's output guard: {e}"),
            InitError::UnknownKind(k) => write!(f, "this program has no stage kind `{k}`"),
            InitError::BadOptions(e) => write!(f, "bad options: {e}"),
            InitError::Build(e) => e.fmt(f),
            InitError::IsSource(k) => write!(f, "`{k}` is a source"),
        }
    }
}

fn build_chain(inits: &[StageInit], registry: &Registry) -> Result<Vec<Arc<dyn Stage>>, InitError> {
    // One guard for the chain, joined to conveyor's through the run folder.
    let guard = match inits.first().and_then(|i| i.run_dir.as_ref()) {
        Some(dir) => crate::output::Guard::join(dir).map_err(InitError::Guard)?,
        None => crate::output::Guard::unchecked(),
    };
    inits
        .iter()
        .map(|init| {
            let spec = registry
                .get(&init.kind)
                .ok_or_else(|| InitError::UnknownKind(init.kind.clone()))?;
            let table: toml::Table =
                toml::from_str(&init.options).map_err(|e| InitError::BadOptions(e.to_string()))?;
            let ctx = crate::stage::BuildContext {
                stage: init.name.clone(),
                timeout: init.timeout,
                output: guard.clone(),
                in_worker: true,
            };
            match (spec.build)(&table, &ctx).map_err(InitError::Build)? {
                Built::Stage(stage) => Ok(stage),
                Built::Source(_) => Err(InitError::IsSource(init.kind.clone())),
            }
        })
        .collect()
}

/// Take one item through the chain. `None`: conveyor has gone away.
fn run_chain(
    stages: &[Arc<dyn Stage>],
    item: crate::item::Item,
    tx: &IpcSender<FromWorker>,
) -> Option<FromWorker> {
    let enter = |at| tx.send(FromWorker::Enter(at)).is_ok();
    let (at, step, _) = super::call::through_chain(stages, item, enter)?;
    Some(match step {
        Step::Done(out) => FromWorker::Done {
            at,
            result: Ok(out.map(|i| Box::new(WireItem::from(*i)))),
        },
        Step::Failed(e) => FromWorker::Done {
            at,
            result: Err(Reason(e)),
        },
        Step::Panicked(message) => FromWorker::Panicked { at, message },
    })
}
