//! The loader never panics: thousands of mutated pipeline files, random
//! bytes and random overrides go through `load_str`, which must answer with
//! a pipeline or diagnostics every time.

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::*;

/// A small deterministic generator, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    "[[stage]]",
    "[pipeline]",
    "[stage]",
    "name",
    "kind",
    "input",
    "inputs",
    "mode",
    "workers",
    " = ",
    "=",
    "\"",
    "'",
    "\"\"\"",
    "[",
    "]",
    "{",
    "}",
    ",",
    "\n",
    "#",
    "${",
    "${X:-",
    "}",
    "-1",
    "0",
    "99999999999999999999",
    "1e400",
    "nan",
    "inf",
    "true",
    "1979-05-27T07:32:00Z",
    "\"processes\"",
    "\"threads\"",
    "\"inline\"",
    "\"scan\"",
    "\"decode\"",
    "\"resize\"",
    "\"write\"",
    "\"chaos\"",
    "width",
    "timeout = \"",
    "memory_limit = \"",
    "\u{0}",
    "é",
    "🦀",
    "\\u0000",
    "..",
    "/",
    "{stem}",
    "{",
    "filename",
    "aspect = \"0:0\"",
    "x.y.z",
    "a.b = 1",
];

fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..=rng.below(6) {
        let at = rng.below(chars.len() + 1);
        match rng.below(5) {
            0 if !chars.is_empty() => {
                let end = (at + rng.below(20)).min(chars.len());
                chars.drain(at.min(end)..end);
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                chars.splice(at..at, t.chars());
            }
            2 if !chars.is_empty() => {
                let from = rng.below(chars.len());
                let end = (from + rng.below(40)).min(chars.len());
                let piece: Vec<char> = chars[from..end].to_vec();
                chars.splice(at..at, piece);
            }
            3 => {
                let c = char::from_u32(rng.next() as u32 % 0x2FF).unwrap_or('?');
                chars.insert(at, c);
            }
            _ => {
                if let Some(c) = chars.get_mut(at) {
                    *c = char::from(b' ' + (rng.below(95) as u8));
                }
            }
        }
    }
    chars.into_iter().collect()
}

fn examples() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    assert!(!out.is_empty(), "no example pipelines to mutate");
    out
}

fn must_not_panic(text: &str, overrides: &[Override]) {
    let registry = Registry::builtin();
    let result = catch_unwind(AssertUnwindSafe(|| {
        // Rendering is part of answering: it must not panic either.
        if let Err(d) = load_str("fuzz.toml", text, overrides, &registry) {
            let _ = d.render(Style::PLAIN);
            assert!(d.has_errors() || d.items.is_empty());
        }
    }));
    assert!(
        result.is_ok(),
        "the loader panicked on:\n{text}\nwith {overrides:?}"
    );
}

#[test]
fn mutated_pipelines_never_panic_the_loader() {
    let examples = examples();
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    for i in 0..3000 {
        let base = &examples[i % examples.len()];
        let mut text = mutate(&mut rng, base);
        if i % 3 == 0 {
            text = mutate(&mut rng, &text);
        }
        must_not_panic(&text, &[]);
    }
}

#[test]
fn random_bytes_never_panic_the_loader() {
    let mut rng = Rng(0xB17E_5000_0000_0002);
    for _ in 0..1000 {
        let len = rng.below(400);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        must_not_panic(&String::from_utf8_lossy(&bytes), &[]);
    }
}

#[test]
fn random_overrides_never_panic_the_loader() {
    let examples = examples();
    let mut rng = Rng(0x0FE2_2D00_0000_0003);
    let stages = ["scan", "load", "thumb", "jpeg", "save", "nope", "", "."];
    let keys = [
        "width", "mode", "workers", "dir", "filename", "timeout", "", "a.b", "=", "kind", "inputs",
    ];
    for i in 0..2000 {
        let token = TOKENS[rng.below(TOKENS.len())];
        let value = mutate(&mut rng, token);
        let set = format!(
            "{}.{}={value}",
            stages[rng.below(stages.len())],
            keys[rng.below(keys.len())]
        );
        let mode = mutate(&mut rng, "load=processes");
        let overrides = [Override::Set(set), Override::Mode(mode)];
        must_not_panic(&examples[i % examples.len()], &overrides);
    }
}
