//! The executor with test-only stage kinds registered from outside, as an
//! embedding program would: streaming through bounded queues, order in
//! inline mode, panics and retries.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::*;
use crate::config::{self, Override, Pipeline};
use crate::item::{Item, PayloadType, Types};
use crate::stage::{
    BuildContext, Built, Found, KindSpec, Output, Source, SourceContext, Stage, StageError,
    StageOptions,
};
use crate::stages::Registry;

const N: u64 = 10_000;

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
struct NoOptions {}
impl StageOptions for NoOptions {}

// Each test uses its own kinds and statics, so tests may run in parallel.
static EMITTED: AtomicU64 = AtomicU64::new(0);
static SUNK: AtomicU64 = AtomicU64::new(0);
static MAX_IN_FLIGHT: AtomicU64 = AtomicU64::new(0);
static EMITTED_AT_FIRST_SINK: AtomicU64 = AtomicU64::new(u64::MAX);

struct Counter;
impl Source for Counter {
    fn produce(&self, _: &SourceContext, emit: &mut dyn FnMut(Found) -> bool) {
        for i in 0..N {
            EMITTED.fetch_add(1, Ordering::SeqCst);
            let name = format!("f{i:05}.txt");
            if !emit(Found::Item(Box::new(Item::new(
                name.clone().into(),
                name.into(),
            )))) {
                return;
            }
        }
    }
}

struct Pass;
impl Stage for Pass {
    fn process(&self, item: Item) -> Result<Option<Item>, StageError> {
        Ok(Some(item))
    }
}

struct Sink;
impl Stage for Sink {
    fn process(&self, item: Item) -> Result<Option<Item>, StageError> {
        let emitted = EMITTED.load(Ordering::SeqCst);
        let sunk = SUNK.fetch_add(1, Ordering::SeqCst);
        let _ = EMITTED_AT_FIRST_SINK.compare_exchange(
            u64::MAX,
            emitted,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        MAX_IN_FLIGHT.fetch_max(emitted - sunk, Ordering::SeqCst);
        Ok(Some(item))
    }
}

fn kind(
    name: &'static str,
    build: fn(&toml::Table, &BuildContext) -> Result<Built, crate::stage::KindError>,
    source: bool,
) -> KindSpec {
    KindSpec {
        name,
        paths: crate::stage::no_paths,
        summary: "test kind",
        accepts: if source {
            Types::NONE
        } else {
            Types::of(&[PayloadType::Nothing])
        },
        output: Output::SameAsInput,
        schema: || schemars::schema_for!(NoOptions),
        check: crate::stage::check_options::<NoOptions>,
        meaning: crate::stage::meaning::<NoOptions>,
        revision: 1,
        build,
    }
}

fn load(text: &str, registry: &Registry, overrides: &[Override]) -> Pipeline {
    match config::load_str("test.toml", text, overrides, registry) {
        Ok(l) => l.pipeline,
        Err(d) => panic!("{}", d.render(config::Style::PLAIN)),
    }
}

#[test]
fn items_stream_through_bounded_queues() {
    let mut registry = Registry::builtin();
    let mut counter = kind("counter", |_, _| Ok(Built::Source(Arc::new(Counter))), true);
    counter.output = Output::Fixed(PayloadType::Nothing);
    registry.register(counter);
    registry.register(kind("pass", |_, _| Ok(Built::Stage(Arc::new(Pass))), false));
    registry.register(kind("sink", |_, _| Ok(Built::Stage(Arc::new(Sink))), false));
    let p = load(
        r#"
[pipeline]
queue = 8
[[stage]]
name = "src"
kind = "counter"
[[stage]]
name = "middle"
kind = "pass"
workers = 2
[[stage]]
name = "end"
kind = "sink"
mode = "inline"
"#,
        &registry,
        &[],
    );
    let summary = run(&p, &RunOptions::default()).expect("runs");
    assert_eq!(summary.scanned, N);
    assert_eq!(summary.ok, N);
    assert_eq!(SUNK.load(Ordering::SeqCst), N);
    // Two queues of 8, three workers holding an item each, the one the
    // source is handing over and the ones it holds back to start the
    // largest first: nothing else can be in flight.
    let bound = 8 * 2 + 3 + 1 + super::source::LOOK_AHEAD as u64;
    assert!(
        MAX_IN_FLIGHT.load(Ordering::SeqCst) <= bound,
        "in flight: {}",
        MAX_IN_FLIGHT.load(Ordering::SeqCst)
    );
    // So the first item reached the end long before the source was done.
    assert!(EMITTED_AT_FIRST_SINK.load(Ordering::SeqCst) <= bound);
}

static ORDER: Mutex<Vec<String>> = Mutex::new(Vec::new());
struct Recorder;
impl Stage for Recorder {
    fn process(&self, item: Item) -> Result<Option<Item>, StageError> {
        ORDER
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(item.rel_str());
        Ok(Some(item))
    }
}

#[test]
fn inline_keeps_scan_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    for i in 0..50 {
        std::fs::write(dir.path().join(format!("{i:03}.txt")), b"x").expect("write");
    }
    let mut registry = Registry::builtin();
    registry.register(kind(
        "recorder",
        |_, _| Ok(Built::Stage(Arc::new(Recorder))),
        false,
    ));
    let text = format!(
        "[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"{}\"\n\n[[stage]]\nname = \"rec\"\nkind = \"recorder\"\nmode = \"inline\"\n",
        dir.path().display()
    );
    let summary = run(&load(&text, &registry, &[]), &RunOptions::default()).expect("runs");
    assert_eq!(summary.ok, 50);
    let seen = ORDER.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let expected: Vec<String> = (0..50).map(|i| format!("{i:03}.txt")).collect();
    assert_eq!(seen, expected);
}

static ATTEMPTS: AtomicU64 = AtomicU64::new(0);
struct Flaky;
impl Stage for Flaky {
    fn process(&self, item: Item) -> Result<Option<Item>, StageError> {
        if item.rel_str() == "boom.txt" {
            panic!("boom on purpose");
        }
        if item.rel_str() == "flaky.txt" && ATTEMPTS.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(StageError::new("first attempt fails"));
        }
        Ok(Some(item))
    }
}

#[test]
fn panics_fail_one_item_and_retries_recover() {
    let dir = tempfile::tempdir().expect("temp dir");
    for name in ["a.txt", "boom.txt", "flaky.txt", "z.txt"] {
        std::fs::write(dir.path().join(name), b"x").expect("write");
    }
    let mut registry = Registry::builtin();
    registry.register(kind(
        "flaky",
        |_, _| Ok(Built::Stage(Arc::new(Flaky))),
        false,
    ));
    let text = format!(
        "[pipeline]\nretries = 1\n[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"{}\"\n\n[[stage]]\nname = \"f\"\nkind = \"flaky\"\n",
        dir.path().display()
    );
    let summary = run(&load(&text, &registry, &[]), &RunOptions::default()).expect("runs");
    assert_eq!((summary.ok, summary.failed), (3, 1));
    assert_eq!(summary.failures.len(), 1);
    let f = &summary.failures[0];
    assert!(f.path.ends_with("boom.txt"));
    assert_eq!(f.stage, "f");
    assert_eq!(f.reason, "panicked: boom on purpose (after 2 attempts)");
}

/// Pixels are handed over in shared memory only by a chain whose every
/// reader runs in workers, and never by one whose last stage gathers.
#[test]
fn only_chains_read_by_workers_alone_hand_pixels_over() {
    let registry = Registry::builtin();
    let text = r#"
[[stage]]
name = "scan"
kind = "scan"
root = "."

[[stage]]
name = "load"
kind = "decode"

[[stage]]
name = "thumb"
kind = "resize"
input = "load"
width = 64

[[stage]]
name = "thumb-png"
kind = "encode"
format = "png"

[[stage]]
name = "large"
kind = "resize"
input = "load"
width = 640

[[stage]]
name = "large-png"
kind = "encode"
format = "png"
"#;
    let at = |p: &Pipeline, name: &str| {
        p.stages
            .iter()
            .position(|s| s.name == name)
            .unwrap_or_else(|| panic!("no stage {name}"))
    };
    let hands_over = |p: &Pipeline, in_workers: &dyn Fn(&str) -> bool, gathers: &[&str]| {
        let chains = plan::chains(p, &vec![false; p.stages.len()]);
        let workers: Vec<bool> = chains
            .iter()
            .map(|c| in_workers(&p.stages[c[0]].name))
            .collect();
        let gathers: Vec<usize> = gathers.iter().map(|g| at(p, g)).collect();
        let by_chain = plan::hands_over(p, &chains, &workers, &|i| gathers.contains(&i));
        let mut by_head: Vec<(String, bool)> = chains
            .iter()
            .zip(by_chain)
            .map(|(c, h)| (p.stages[c[0]].name.clone(), h))
            .collect();
        by_head.sort();
        by_head
    };
    let all = load(text, &registry, &[Override::Mode("processes".into())]);
    let everywhere = |_: &str| true;
    assert_eq!(
        hands_over(&all, &everywhere, &[]),
        [
            ("large".to_string(), false),
            ("load".to_string(), true),
            ("thumb".to_string(), false),
        ],
        "the branches' readers: none"
    );
    // One branch in this process: the pixels must come here.
    assert_eq!(
        hands_over(&all, &|s| s != "large", &[])[1],
        ("load".to_string(), false)
    );
    // The loader not in workers: it has no workers to hand over with.
    assert_eq!(
        hands_over(&all, &|s| s != "load", &[])[1],
        ("load".to_string(), false)
    );
    // A loader that gathers (as a contact sheet does) keeps its pixels here.
    assert_eq!(
        hands_over(&all, &everywhere, &["load"])[1],
        ("load".to_string(), false)
    );
}
